//! The quality component of the ranking through the real server and CLI: quality signals from
//! the manifest's metadata and from the pictures themselves (resolution, sharpness) are
//! computed at ingest, shown per hit by `vsa search --explain`, and lift an item only while
//! an operator has the quality weight on (`vsa admin weights quality=…`, live and versioned).

use std::io::Cursor;

use vsa_models::image::{self, DynamicImage, ImageFormat};
use vsa_protocol::{ItemContent, SearchResponse};

use crate::support::{
    ADMIN_TOKEN, Server, TempDir, item, near_item_0, rank, search_explained as search, vsa,
};

fn component(r: &SearchResponse, id: &str, name: &str) -> f32 {
    r.hits
        .iter()
        .find(|h| h.id == id)
        .and_then(|h| h.components.iter().find(|c| c.0 == name))
        .map(|c| c.1)
        .unwrap_or_else(|| panic!("{id} has no {name} component in {:?}", r.hits))
}

/// `vsa admin weights PAIR` as an operator types it; returns the new version.
fn set_weights(addr: &str, pair: &str) -> u64 {
    let out = vsa(&[
        "admin",
        "--addr",
        addr,
        "--admin-token",
        ADMIN_TOKEN,
        "weights",
        pair,
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .skip_while(|l| !l.starts_with('{'))
        .collect::<Vec<_>>()
        .join("\n");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {text}"));
    v["version"].as_u64().expect("version")
}

fn rated(n: u64, stars: &str) -> vsa_protocol::UpsertRequest {
    let mut it = item(n, "things");
    it.metadata.push(("seller_rating".into(), stars.into()));
    it
}

#[test]
fn a_well_rated_item_rises_only_while_the_quality_weight_is_on() {
    let server = Server::start("");
    let addr = server.addr.to_string();
    let mut client = server.client();
    for n in 0..40 {
        client.upsert(rated(n, "1")).unwrap();
    }
    let q = near_item_0(20_000);
    let before = search(&mut client, &q);
    assert_eq!(before.hits[0].id, "item-00000");
    let target = before.hits[5].id.clone();
    // The seller of the sixth hit is rated 5 stars; every other seller 1.
    let n: u64 = target["item-".len()..].parse().unwrap();
    client.upsert(rated(n, "5")).unwrap();

    let off = search(&mut client, &q);
    assert_eq!(rank(&off, &target), Some(5), "{:?}", off.hits);
    assert_eq!(off.weights_version, before.weights_version);
    // The signal is the metadata's rating over 5 (no picture: no image signals).
    assert!((component(&off, &target, "quality") - 1.0).abs() < 1e-6);
    assert!((component(&off, "item-00000", "quality") - 0.2).abs() < 1e-6);

    let v = set_weights(&addr, "quality=0.5");
    assert!(v > before.weights_version);
    let on = search(&mut client, &q);
    assert_eq!(on.weights_version, v);
    // Visual similarity still leads: item 0 is the query's own item; the well-rated one
    // passes the four unrelated items that were visually a little closer.
    assert_eq!(on.hits[0].id, "item-00000", "{:?}", on.hits);
    assert_eq!(rank(&on, &target), Some(1), "{:?}", on.hits);
    let visual = component(&on, &target, "visual");
    assert!(
        (on.hits[1].score - (visual + 0.5 * 1.0)).abs() < 1e-4,
        "score = visual + 0.5 · quality: {:?}",
        on.hits[1]
    );

    let back = set_weights(&addr, "quality=0");
    assert!(back > v);
    let again = search(&mut client, &q);
    assert_eq!(again.weights_version, back);
    assert_eq!(rank(&again, &target), Some(5), "{:?}", again.hits);
}

fn png(img: &DynamicImage) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, ImageFormat::Png)
        .expect("encode png");
    out.into_inner()
}

/// `vsa search IMAGE --explain --json`: the hits' ids and components.
fn explain(addr: &str, image: &std::path::Path) -> Vec<(String, serde_json::Value)> {
    let out = vsa(&[
        "search",
        "--addr",
        addr,
        "--explain",
        "--json",
        image.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|h| {
            (
                h["id"].as_str().unwrap().to_string(),
                h["components"].clone(),
            )
        })
        .collect()
}

#[test]
fn a_sharp_picture_outranks_a_blurred_copy_only_with_the_quality_weight() {
    let dir = TempDir::new("ranking");
    let server = Server::start("");
    let addr = server.addr.to_string();
    let mut client = server.client();
    let photo = image::open(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/testdata/chelsea.png"),
    )
    .expect("fixture photo");
    // The same photo, soft: half the resolution and blurred.
    let (w, h) = (photo.width(), photo.height());
    let soft = photo
        .resize_exact(w / 2, h / 2, image::imageops::FilterType::Triangle)
        .blur(2.5);
    for (id, img) in [("sharp", &photo), ("soft", &soft)] {
        let mut it = item(0, "animals");
        it.id = id.into();
        it.content = ItemContent::Image(png(img));
        it.metadata.clear();
        client.upsert(it).unwrap();
    }
    let query = dir.path().join("soft.png");
    std::fs::write(&query, png(&soft)).unwrap();

    let plain = explain(&addr, &query);
    let ids: Vec<&str> = plain.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(&ids[..2], ["soft", "sharp"], "{plain:?}");
    let q = |hits: &[(String, serde_json::Value)], id: &str| {
        let c = &hits.iter().find(|(i, _)| i == id).expect("hit").1;
        (
            c["visual"].as_f64().expect("visual"),
            c["quality"].as_f64().expect("quality"),
        )
    };
    let (soft_visual, soft_quality) = q(&plain, "soft");
    let (sharp_visual, sharp_quality) = q(&plain, "sharp");
    // Computed at ingest from the pictures: the soft copy has fewer pixels and less detail.
    assert!(
        sharp_quality > soft_quality + 0.05,
        "sharp {sharp_quality}, soft {soft_quality}"
    );
    assert!(soft_visual > sharp_visual);

    // Enough weight for the quality gap to outweigh the visual one.
    let w = 2.0 * (soft_visual - sharp_visual) / (sharp_quality - soft_quality);
    set_weights(&addr, &format!("quality={w}"));
    let weighted = explain(&addr, &query);
    let ids: Vec<&str> = weighted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(&ids[..2], ["sharp", "soft"], "{weighted:?}");
}
