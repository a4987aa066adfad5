//! Golden bytes: pin the wire encoding, so a reordered variant or field fails here rather
//! than between an old client and a new server.

use super::*;
use crate::frame::{decode_body, encode_body};

fn golden<T>(value: T, bytes: &[u8])
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    assert_eq!(encode_body(&value).expect("encode"), bytes, "{value:?}");
    assert_eq!(decode_body::<T>(bytes).expect("decode"), value);
}

#[test]
fn request_variant_indices_are_stable() {
    golden(
        Request::Hello(Hello {
            protocol_version: 1,
            client: "c".into(),
            token: None,
        }),
        &[0, 1, 1, b'c', 0],
    );
    golden(
        Request::Search(SearchRequest::new(QueryInput::ItemId("i".into()), 5)),
        &[1, 1, 1, b'i', 5, 0, 0, 0, 0, 0, 0, 0],
    );
    golden(
        Request::Upsert(UpsertRequest {
            id: "i".into(),
            content: ItemContent::Image(vec![9, 8]),
            category: "c".into(),
            attributes: vec![],
            metadata: vec![],
        }),
        &[2, 1, b'i', 0, 2, 9, 8, 1, b'c', 0, 0],
    );
    golden(
        Request::Delete(DeleteRequest { id: "i".into() }),
        &[3, 1, b'i'],
    );
    golden(Request::Stats, &[4]);
    golden(Request::Health, &[5]);
    golden(
        Request::Admin(AdminRequest {
            token: "t".into(),
            action: AdminAction::RebalanceStatus,
        }),
        &[6, 1, b't', 6],
    );
    golden(
        Request::Clicks(vec![ClickRequest {
            query_id: 3,
            item_id: "i".into(),
            position: 2,
        }]),
        &[9, 1, 3, 1, b'i', 2],
    );
}

#[test]
fn a_clicks_body_is_known_by_its_tag() {
    let click = ClickRequest {
        query_id: 1,
        item_id: "i".into(),
        position: 0,
    };
    let requests = [
        Request::Hello(Hello {
            protocol_version: 1,
            client: "c".into(),
            token: None,
        }),
        Request::Search(SearchRequest::new(QueryInput::ItemId("i".into()), 5)),
        Request::Upsert(UpsertRequest {
            id: "i".into(),
            content: ItemContent::Image(vec![1]),
            category: "c".into(),
            attributes: vec![],
            metadata: vec![],
        }),
        Request::Delete(DeleteRequest { id: "i".into() }),
        Request::Stats,
        Request::Health,
        Request::Admin(AdminRequest {
            token: "t".into(),
            action: AdminAction::Snapshot,
        }),
        Request::Click(click.clone()),
        Request::Metrics,
        Request::Clicks(vec![click]),
    ];
    for request in requests {
        let body = encode_body(&request).expect("encode");
        assert_eq!(
            Request::is_clicks_body(&body),
            matches!(request, Request::Clicks(_)),
            "{request:?}"
        );
    }
    for unknown in [&[][..], &[10], &[250], &[251, 0, 1]] {
        assert!(!Request::is_clicks_body(unknown), "{unknown:?}");
    }
}

#[test]
fn admin_action_indices_are_stable() {
    let actions = [
        AdminAction::PanicActor {
            name: String::new(),
        },
        AdminAction::Snapshot,
        AdminAction::SetRerankWeights(vec![]),
        AdminAction::RebalancePlan,
        AdminAction::RebalanceApply { plan_id: 0 },
        AdminAction::RebalanceCancel,
        AdminAction::RebalanceStatus,
    ];
    for (index, action) in actions.into_iter().enumerate() {
        let body = encode_body(&action).expect("encode");
        assert_eq!(usize::from(body[0]), index, "{action:?}");
    }
}

#[test]
fn response_variant_indices_are_stable() {
    golden(
        Response::Hello(HelloReply {
            protocol_version: 1,
            server: "s".into(),
        }),
        &[0, 1, 1, b's'],
    );
    golden(
        Response::Deleted(DeleteReply {
            id: "i".into(),
            seq: 7,
            existed: true,
        }),
        &[3, 1, b'i', 7, 1],
    );
    golden(
        Response::Health(HealthReply {
            state: HealthState::Degraded,
            checks: vec![],
        }),
        &[5, 1, 0],
    );
    golden(
        Response::Admin(AdminReply {
            message: "m".into(),
            payload: None,
        }),
        &[6, 1, b'm', 0],
    );
    // Error codes travel as strings.
    golden(
        Response::error(ErrorCode::Busy, "x"),
        &[7, 4, b'b', b'u', b's', b'y', 1, b'x'],
    );
    golden(
        Response::ClicksAccepted(ClicksReply {
            accepted: 2,
            repeated: 1,
            rejected: vec![(4, ErrorReply::new(ErrorCode::Busy, "x"))],
        }),
        &[10, 2, 1, 1, 4, 4, b'b', b'u', b's', b'y', 1, b'x'],
    );
}

#[test]
fn image_bytes_keep_the_plain_vec_wire_format() {
    // `bytes::serialize` must produce what a plain `Vec<u8>` field would.
    let as_bytes = encode_body(&QueryInput::Image(vec![1, 2, 3])).expect("encode");
    let as_seq = encode_body(&(0u32, vec![1u8, 2, 3])).expect("encode");
    assert_eq!(as_bytes, as_seq);
}

#[test]
fn kinds_are_named() {
    assert_eq!(Request::Stats.kind(), "stats");
    assert_eq!(Response::error(ErrorCode::Internal, "x").kind(), "error");
}
