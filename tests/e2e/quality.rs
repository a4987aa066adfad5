//! Search quality on synthetic real-shot photos: a small product pasted off-centre on a busy
//! background is localised (the ROI box overlaps it) and found; the guided box mode; presets;
//! the derived colour attribute and filtering by it; category fusion branches.

use std::io::Cursor;

use vsa_models::image::{self, DynamicImage, ImageFormat, Rgb, RgbImage};
use vsa_protocol::{
    BoxXywh, ErrorCode, FilterClause, ItemContent, ProtocolError, QueryInput, SearchRequest,
    UpsertRequest,
};

use crate::support::fixtures::{self, Item};
use crate::support::{Server, TempDir, wait_until};

/// Ingests the fixture catalogue without the manifest's colour for the synthetic shapes, so
/// the server derives it.
fn ingest(client: &mut vsa_protocol::BlockingClient, items: &[Item]) {
    for it in items {
        let attributes = if it.id.starts_with("shape-") {
            vec![]
        } else {
            vec![("color".into(), it.colour.into())]
        };
        client
            .upsert(UpsertRequest {
                id: it.id.clone(),
                content: ItemContent::Image(std::fs::read(&it.path).unwrap()),
                category: it.category.clone(),
                attributes,
                metadata: vec![],
            })
            .unwrap();
    }
}

/// A 640×480 busy background (smooth colour waves plus a fine grey texture) with `product`
/// scaled to `side`×`side` pasted at (`x`, `y`); JPEG.
fn scene(product: &RgbImage, x: u32, y: u32, side: u32) -> Vec<u8> {
    let mut img = RgbImage::from_fn(640, 480, |px, py| {
        let (fx, fy) = (px as f32, py as f32);
        let wave = ((fx * 0.05).sin() + (fy * 0.07).cos()) * 0.25 + 0.5;
        let grain = (((px * 7 + py * 13) % 17) as f32 / 17.0 - 0.5) * 40.0;
        let g = (90.0 + 70.0 * wave + grain).clamp(0.0, 255.0) as u8;
        let b = (120.0 + 60.0 * (1.0 - wave) + grain).clamp(0.0, 255.0) as u8;
        Rgb([g / 2 + 40, g, b])
    });
    let small = image::imageops::resize(product, side, side, image::imageops::FilterType::Triangle);
    image::imageops::overlay(&mut img, &small, i64::from(x), i64::from(y));
    let mut out = Cursor::new(Vec::new());
    DynamicImage::ImageRgb8(img)
        .write_to(&mut out, ImageFormat::Jpeg)
        .unwrap();
    out.into_inner()
}

fn overlap(a: BoxXywh, b: BoxXywh) -> f32 {
    let ix = (a.x + a.w).min(b.x + b.w).saturating_sub(a.x.max(b.x));
    let iy = (a.y + a.h).min(b.y + b.h).saturating_sub(a.y.max(b.y));
    let inter = (ix * iy) as f32;
    inter / (a.w * a.h + b.w * b.h) as f32 * 2.0
}

#[test]
fn a_small_product_on_a_busy_background_is_localised_and_found() {
    let dir = TempDir::new("quality");
    let items = fixtures::catalogue(dir.path());
    let server = Server::start("");
    let mut client = server.client();
    ingest(&mut client, &items);
    // The localisation prototypes are fitted in the background once items exist.
    assert!(wait_until(std::time::Duration::from_secs(20), || {
        let mut req =
            SearchRequest::new(QueryInput::Image(std::fs::read(&items[0].path).unwrap()), 1);
        req.options.preset = Some("fast".into());
        client.search(req).unwrap().roi.is_some()
    }));

    let cat = image::open(&items.iter().find(|i| i.id == "chelsea").unwrap().path)
        .unwrap()
        .to_rgb8();
    let truth = BoxXywh {
        x: 400,
        y: 250,
        w: 176,
        h: 176,
    };
    let photo = scene(&cat, truth.x, truth.y, truth.w);

    // Default preset (best): the ROI overlaps the product, the product is found.
    let r = client
        .search(SearchRequest::new(QueryInput::Image(photo.clone()), 5))
        .unwrap();
    let roi = r.roi.expect("a localised box");
    assert!(overlap(roi, truth) > 0.3, "roi {roi:?} vs {truth:?}");
    assert_eq!(r.hits[0].id, "chelsea", "{:?}", r.hits);
    assert!(r.timings.iter().any(|(s, _)| s == "map"));
    let prediction = r.category.expect("a category");
    assert_eq!(prediction.category, "animals/mammals");
    assert!(prediction.branches.iter().any(|(b, _, _)| b == "knn"));
    assert!(prediction.branches.iter().any(|(b, _, _)| b == "model"));

    // Guided mode: the user's box is searched as given, no localisation.
    let mut req = SearchRequest::new(QueryInput::Image(photo.clone()), 5);
    req.options.roi = Some(truth);
    let r = client.search(req).unwrap();
    assert_eq!(r.roi, Some(truth));
    assert_eq!(r.hits[0].id, "chelsea");
    assert!(!r.timings.iter().any(|(s, _)| s == "map"));
    // A box outside the photo is bad input.
    let mut req = SearchRequest::new(QueryInput::Image(photo.clone()), 5);
    req.options.roi = Some(BoxXywh {
        x: 5000,
        y: 5000,
        w: 10,
        h: 10,
    });
    match client.search(req) {
        Err(ProtocolError::Server(e)) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("expected bad_request, got {other:?}"),
    }

    // Presets: fast localises too; plain searches the whole photo; unknown ones are refused.
    let mut req = SearchRequest::new(QueryInput::Image(photo.clone()), 5);
    req.options.preset = Some("fast".into());
    let r = client.search(req).unwrap();
    assert!(overlap(r.roi.expect("fast localises"), truth) > 0.3);
    assert_eq!(r.hits[0].id, "chelsea");
    let mut req = SearchRequest::new(QueryInput::Image(photo.clone()), 5);
    req.options.preset = Some("plain".into());
    assert_eq!(client.search(req).unwrap().roi, None);
    let mut req = SearchRequest::new(QueryInput::Image(photo), 5);
    req.options.preset = Some("no-such-preset".into());
    match client.search(req) {
        Err(ProtocolError::Server(e)) => assert_eq!(e.code, ErrorCode::BadRequest),
        other => panic!("expected bad_request, got {other:?}"),
    }
}

#[test]
fn the_derived_colour_attribute_filters_searches() {
    let dir = TempDir::new("colour");
    let items = fixtures::catalogue(dir.path());
    let server = Server::start("");
    let mut client = server.client();
    ingest(&mut client, &items);
    let query = std::fs::read(&items[0].path).unwrap();
    for colour in ["red", "blue", "green", "black", "orange"] {
        let mut req = SearchRequest::new(QueryInput::Image(query.clone()), 20);
        req.filter = vec![FilterClause {
            key: "color".into(),
            values: vec![colour.into()],
        }];
        let got: Vec<String> = client
            .search(req)
            .unwrap()
            .hits
            .into_iter()
            .map(|h| h.id)
            .collect();
        let want: Vec<&str> = items
            .iter()
            .filter(|i| i.id.starts_with("shape-") && i.colour == colour)
            .map(|i| i.id.as_str())
            .collect();
        let mut got_sorted: Vec<&str> = got.iter().map(String::as_str).collect();
        got_sorted.sort_unstable();
        let mut want_sorted = want.clone();
        want_sorted.sort_unstable();
        assert_eq!(got_sorted, want_sorted, "color={colour}");
    }
    // The manifest's colour wins over the derived one.
    let mut req = SearchRequest::new(QueryInput::Image(query), 20);
    req.filter = vec![FilterClause {
        key: "color".into(),
        values: vec!["brown".into(), "grey".into()],
    }];
    let mut got: Vec<String> = client
        .search(req)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| h.id)
        .collect();
    got.sort_unstable();
    assert_eq!(got, vec!["chelsea".to_string(), "coffee".to_string()]);
}

#[test]
fn show_roi_draws_the_box() {
    let dir = TempDir::new("showroi");
    let items = fixtures::catalogue(dir.path());
    let server = Server::start("");
    let mut client = server.client();
    ingest(&mut client, &items);
    let photo = dir.path().join("photo.jpg");
    std::fs::write(
        &photo,
        fixtures::distorted(&items.iter().find(|i| i.id == "coffee").unwrap().path, 5.0),
    )
    .unwrap();
    let out = dir.path().join("roi.png");
    let addr = server.addr.to_string();
    let o = crate::support::vsa(&[
        "search",
        "--addr",
        &addr,
        "--box",
        "10,20,100,80",
        "--show-roi",
        out.to_str().unwrap(),
        photo.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("roi: 10,20,100,80"));
    let drawn = image::open(&out).unwrap().to_rgb8();
    assert_eq!(drawn.get_pixel(10, 20), &Rgb([255, 0, 0]));
    assert_eq!(drawn.get_pixel(109, 99), &Rgb([255, 0, 0]));
}

/// A Prometheus sample without labels from the server's `/metrics`.
fn metric(server: &Server, name: &str) -> Option<f64> {
    let r = crate::support::http::request(server.http?, "GET", "/metrics", &[], b"");
    r.text().lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// `(id, visual score)` of the neighbours of item `id` under `preset`.
fn neighbours(
    client: &mut vsa_protocol::BlockingClient,
    id: &str,
    preset: &str,
) -> Vec<(String, f32)> {
    let mut req = SearchRequest::new(QueryInput::ItemId(id.into()), 5);
    req.options.preset = Some(preset.into());
    req.options.explain = true;
    client
        .search(req)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| {
            let visual = h
                .components
                .iter()
                .find(|(c, _)| c == "visual")
                .map_or(f32::NAN, |c| c.1);
            (h.id, visual)
        })
        .collect()
}

/// The learned whitening: ingest's synthetic views are fitted once `min_pairs` exist (the
/// metrics say so); a whitened preset scores differently from the plain cosine and still finds
/// the product in a shopper's photo; the fit survives a restart (same scores, no re-ingest);
/// a corrupt state file is set aside, and the server starts and searches with the plain cosine.
#[test]
fn the_learned_whitening_is_fitted_used_and_kept_across_restarts() {
    let dir = TempDir::new("whiten");
    let items = fixtures::catalogue(dir.path());
    let extra = "[server]\nhttp_listen = \"127.0.0.1:0\"\n\
                 [quality.whitening]\nviews = 2\nmin_pairs = 16\nrank = 8\n\
                 [quality.presets.white]\nwhole_crop = true\nwhitened = 1.0\n\
                 [quality.presets.cosine]\nwhole_crop = true\nwhitened = 0.0\n";
    let mut server = Server::start_in(dir.path(), extra);
    assert_eq!(
        metric(&server, "vsa_whitening_rank"),
        Some(0.0),
        "nothing fitted yet"
    );
    let mut client = server.client();
    ingest(&mut client, &items);
    assert!(
        wait_until(std::time::Duration::from_secs(30), || metric(
            &server,
            "vsa_whitening_rank"
        ) == Some(8.0)),
        "no fit: {}",
        server.stderr()
    );
    assert_eq!(
        metric(&server, "vsa_whitening_pairs"),
        Some(24.0),
        "12 items × 2 views"
    );
    assert!(metric(&server, "vsa_whitening_fit_pairs").unwrap() >= 16.0);

    let white = neighbours(&mut client, "shape-0", "white");
    let cosine = neighbours(&mut client, "shape-0", "cosine");
    assert_eq!(white.len(), 5);
    assert!(
        white
            .iter()
            .zip(&cosine)
            .any(|(w, c)| (w.1 - c.1).abs() > 1e-3),
        "whitening changed nothing: {white:?} vs {cosine:?}"
    );
    // A shopper's photo of the cat is still found through the whitened score.
    let cat = image::open(&items.iter().find(|i| i.id == "chelsea").unwrap().path)
        .unwrap()
        .to_rgb8();
    let photo = scene(&cat, 400, 250, 176);
    let mut req = SearchRequest::new(QueryInput::Image(photo), 5);
    req.options.preset = Some("white".into());
    assert_eq!(client.search(req).unwrap().hits[0].id, "chelsea");
    drop(client);
    assert!(server.terminate().success());

    // Restart on the same data: the fit is back before any ingest, scores unchanged.
    let mut server = Server::start_in(dir.path(), extra);
    assert_eq!(metric(&server, "vsa_whitening_rank"), Some(8.0));
    assert_eq!(metric(&server, "vsa_whitening_pairs"), Some(24.0));
    let mut client = server.client();
    let again = neighbours(&mut client, "shape-0", "white");
    assert_eq!(again.len(), white.len());
    for (a, b) in again.iter().zip(&white) {
        assert_eq!(a.0, b.0);
        assert!((a.1 - b.1).abs() < 1e-5, "{again:?} vs {white:?}");
    }
    drop(client);
    assert!(server.terminate().success());

    // A corrupt state file: set aside, the server starts without a fit and searches.
    let file = dir.path().join("data/model/whitening.bin");
    std::fs::write(&file, b"not a whitening").unwrap();
    let server = Server::start_in(dir.path(), extra);
    assert_eq!(metric(&server, "vsa_whitening_rank"), Some(0.0));
    assert!(dir.path().join("data/model/whitening.bad").exists());
    let mut client = server.client();
    let plain = neighbours(&mut client, "shape-0", "white");
    for (p, c) in plain.iter().zip(&cosine) {
        assert_eq!(p.0, c.0);
        assert!(
            (p.1 - c.1).abs() < 1e-5,
            "without a fit the plain cosine: {plain:?}"
        );
    }
}
