//! The inference pool with the real bundled model: dynamic batching by shape, backpressure.

use std::time::Duration;

use ractor::Actor;
use vsa_actors::EngineError;
use vsa_actors::inference::{InferencePool, InferencePoolArguments, PoolChannel, PoolConfig};
use vsa_models::Manifest;

async fn pool(
    config: PoolConfig,
) -> (
    vsa_actors::inference::PoolHandle,
    ractor::ActorRef<vsa_actors::inference::InferencePoolMessage>,
) {
    vsa_models::runtime::init(None).expect("ONNX Runtime (run scripts/setup.sh)");
    let channel = PoolChannel::new(config);
    let handle = channel.handle();
    let (actor, _) = Actor::spawn(
        None,
        InferencePool,
        InferencePoolArguments {
            channel,
            manifest: Manifest::bundled().expect("model"),
        },
    )
    .await
    .expect("pool starts");
    (handle, actor)
}

fn tensor(h: u32, w: u32, v: f32) -> Vec<f32> {
    vec![v; 3 * h as usize * w as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_shape_jobs_share_a_batch_and_shapes_never_mix() {
    let (handle, actor) = pool(PoolConfig {
        workers: 1,
        max_batch: 8,
        max_wait_us: 300_000,
        ..PoolConfig::default()
    })
    .await;
    // 6 crops at 224×224 and 2 whole photos at 96×128, submitted together.
    let mut jobs: Vec<_> = (0..6)
        .map(|i| (224, 224, tensor(224, 224, i as f32 / 10.0)))
        .collect();
    jobs.push((96, 128, tensor(96, 128, 0.1)));
    jobs.push((96, 128, tensor(96, 128, 0.2)));
    let out = handle.infer_many(jobs).await.expect("inference");
    assert_eq!(out.len(), 8);
    assert_eq!(
        (out[0].feature_map.height, out[0].feature_map.width),
        (7, 7)
    );
    assert_eq!(
        (out[7].feature_map.height, out[7].feature_map.width),
        (3, 4)
    );
    assert_eq!(out[0].embedding.len(), 1280);
    let snap = handle.snapshot();
    assert_eq!(snap.images, 8);
    assert_eq!(snap.batches, 2, "one batch per shape: {snap:?}");
    // Different inputs, different outputs: results are not mixed up between jobs.
    assert_ne!(out[0].embedding, out[5].embedding);
    actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_busy_at_once() {
    let (handle, actor) = pool(PoolConfig {
        workers: 1,
        max_batch: 1,
        max_wait_us: 0,
        queue_capacity: 2,
        ..PoolConfig::default()
    })
    .await;
    let mut accepted = Vec::new();
    let mut busy = 0;
    for i in 0..12 {
        match handle.submit(224, 224, tensor(224, 224, i as f32 / 12.0)) {
            Ok(rx) => accepted.push(rx),
            Err(EngineError::Busy(_)) => busy += 1,
            Err(e) => panic!("unexpected error {e}"),
        }
    }
    assert!(busy >= 8, "only {busy} of 12 refused with a queue of 2");
    assert_eq!(handle.snapshot().busy_rejections, busy);
    // Everything accepted is answered: nothing is lost.
    for rx in accepted {
        let out = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("answered")
            .expect("reply");
        assert!(out.is_ok());
    }
    // Wrong tensor sizes are refused before queueing.
    assert!(matches!(
        handle.submit(224, 224, vec![0.0; 10]),
        Err(EngineError::BadRequest(_))
    ));
    actor.stop(None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_worker_is_replaced_and_counted() {
    let (handle, actor) = pool(PoolConfig {
        workers: 1,
        ..PoolConfig::default()
    })
    .await;
    handle.poison_one().expect("queue");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while handle.snapshot().restarts == 0 {
        assert!(std::time::Instant::now() < deadline, "worker not restarted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = handle
        .infer(224, 224, tensor(224, 224, 0.3))
        .await
        .expect("served after restart");
    assert_eq!(out.embedding.len(), 1280);
    actor.stop(None);
}
