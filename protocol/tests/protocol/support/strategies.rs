//! proptest strategies for every wire type (floats never NaN, so `PartialEq` round-trips).

use proptest::collection::vec;
use proptest::prelude::*;
use vsa_protocol::*;

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        any::<String>(),
        "[a-z][a-z0-9_-]{0,15}",
    ]
}

fn float() -> impl Strategy<Value = f32> {
    any::<f32>().prop_filter("NaN never equals itself", |f| !f.is_nan())
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    vec(any::<u8>(), 0..300)
}

fn floats() -> impl Strategy<Value = Vec<f32>> {
    vec(float(), 0..40)
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    vec((text(), text()), 0..4)
}

fn weights() -> impl Strategy<Value = Vec<(String, f32)>> {
    vec((text(), float()), 0..4)
}

fn boxes() -> impl Strategy<Value = BoxXywh> {
    (any::<u32>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(x, y, w, h)| BoxXywh {
        x,
        y,
        w,
        h,
    })
}

fn search_request() -> impl Strategy<Value = SearchRequest> {
    let query = prop_oneof![
        bytes().prop_map(QueryInput::Image),
        text().prop_map(QueryInput::ItemId),
        floats().prop_map(QueryInput::Embedding),
    ];
    let filter = vec(
        (text(), vec(text(), 0..3)).prop_map(|(key, values)| FilterClause { key, values }),
        0..3,
    );
    let scope = prop_oneof![
        Just(Scope::All),
        any::<u32>().prop_map(Scope::TopCategories)
    ];
    let options = (
        proptest::option::of(text()),
        proptest::option::of(boxes()),
        proptest::option::of(scope),
        proptest::option::of(any::<u32>()),
        any::<bool>(),
    )
        .prop_map(|(preset, roi, scope, candidates, explain)| SearchOptions {
            preset,
            roi,
            scope,
            candidates,
            explain,
        });
    (
        query,
        any::<u32>(),
        proptest::option::of(text()),
        filter,
        options,
    )
        .prop_map(|(query, k, category, filter, options)| SearchRequest {
            query,
            k,
            category,
            filter,
            options,
        })
}

fn upsert_request() -> impl Strategy<Value = UpsertRequest> {
    let content = prop_oneof![
        bytes().prop_map(ItemContent::Image),
        floats().prop_map(ItemContent::Embedding),
    ];
    (text(), content, text(), pairs(), pairs()).prop_map(
        |(id, content, category, attributes, metadata)| UpsertRequest {
            id,
            content,
            category,
            attributes,
            metadata,
        },
    )
}

fn admin_action() -> impl Strategy<Value = AdminAction> {
    prop_oneof![
        text().prop_map(|name| AdminAction::PanicActor { name }),
        Just(AdminAction::Snapshot),
        weights().prop_map(AdminAction::SetRerankWeights),
        Just(AdminAction::RebalancePlan),
        any::<u64>().prop_map(|plan_id| AdminAction::RebalanceApply { plan_id }),
        Just(AdminAction::RebalanceCancel),
        Just(AdminAction::RebalanceStatus),
    ]
}

pub(crate) fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<u32>(), text(), proptest::option::of(text())).prop_map(
            |(protocol_version, client, token)| Request::Hello(Hello {
                protocol_version,
                client,
                token
            })
        ),
        search_request().prop_map(Request::Search),
        upsert_request().prop_map(Request::Upsert),
        text().prop_map(|id| Request::Delete(DeleteRequest { id })),
        Just(Request::Stats),
        Just(Request::Health),
        (text(), admin_action())
            .prop_map(|(token, action)| Request::Admin(AdminRequest { token, action })),
    ]
}

fn search_response() -> impl Strategy<Value = SearchResponse> {
    let hit = (text(), float(), text(), weights()).prop_map(|(id, score, category, components)| {
        SearchHit {
            id,
            score,
            category,
            components,
        }
    });
    let prediction =
        (text(), float(), weights()).prop_map(|(category, confidence, alternatives)| {
            CategoryPrediction {
                category,
                confidence,
                alternatives,
                branches: Vec::new(),
            }
        });
    (
        any::<u64>(),
        vec(hit, 0..5),
        proptest::option::of(prediction),
        proptest::option::of(boxes()),
        vec((text(), any::<u64>()), 0..5),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(query_id, hits, category, roi, timings, degraded, epoch)| SearchResponse {
                query_id,
                hits,
                category,
                roi,
                timings,
                degraded,
                weights_version: epoch / 2,
                epoch,
            },
        )
}

fn stats_reply() -> impl Strategy<Value = StatsReply> {
    let shard = (
        text(),
        text(),
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(name, category, items, memory_bytes, queue_depth, searches)| ShardStats {
                name,
                category,
                items,
                memory_bytes,
                queue_depth,
                searches,
            },
        );
    let inference = (
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(workers, queue_depth, queue_capacity, batches, images, busy_rejections)| {
                InferenceStats {
                    workers,
                    queue_depth,
                    queue_capacity,
                    batches,
                    images,
                    busy_rejections,
                }
            },
        );
    (
        any::<u64>(),
        vec(shard, 0..4),
        inference,
        any::<u64>(),
        float(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(
            |(items, shards, inference, restarts, qps, uptime_ms, epoch)| StatsReply {
                items,
                shards,
                inference,
                restarts,
                qps,
                uptime_ms,
                epoch,
            },
        )
}

fn health_state() -> impl Strategy<Value = HealthState> {
    prop_oneof![
        Just(HealthState::Healthy),
        Just(HealthState::Degraded),
        Just(HealthState::Down),
    ]
}

pub(crate) fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u32>(), text()).prop_map(|(protocol_version, server)| Response::Hello(HelloReply {
            protocol_version,
            server
        })),
        search_response().prop_map(Response::SearchResults),
        (text(), any::<u64>(), any::<bool>())
            .prop_map(|(id, seq, replaced)| Response::Upserted(UpsertReply { id, seq, replaced })),
        (text(), any::<u64>(), any::<bool>())
            .prop_map(|(id, seq, existed)| Response::Deleted(DeleteReply { id, seq, existed })),
        stats_reply().prop_map(Response::Stats),
        (health_state(), vec((text(), health_state(), text()), 0..4))
            .prop_map(|(state, checks)| Response::Health(HealthReply { state, checks })),
        (text(), proptest::option::of(text()))
            .prop_map(|(message, payload)| Response::Admin(AdminReply { message, payload })),
        (proptest::sample::select(ErrorCode::ALL), text())
            .prop_map(|(code, message)| Response::error(code, message)),
    ]
}
