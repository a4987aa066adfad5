//! A toy server that answers every request kind deterministically, in the shape a real
//! server's connection loop takes: answer protocol errors with `Response::Error`, keep going
//! while the connection is usable.

use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use vsa_protocol::*;

#[derive(Debug, Clone)]
pub(crate) struct Toy {
    pub(crate) version: u32,
    pub(crate) token: Option<String>,
    pub(crate) admin_token: String,
    pub(crate) limits: FrameLimits,
    /// Read requests but never answer (for timeouts).
    pub(crate) silent: bool,
}

impl Default for Toy {
    fn default() -> Self {
        Toy {
            version: PROTOCOL_VERSION,
            token: None,
            admin_token: "secret".into(),
            limits: FrameLimits::default(),
            silent: false,
        }
    }
}

impl Toy {
    pub(crate) fn answer(&self, request: Request, seq: &mut u64) -> Response {
        match request {
            Request::Hello(hello) => {
                if self.token.is_some() && hello.token != self.token {
                    return Response::error(ErrorCode::Unauthorized, "bad token");
                }
                Response::Hello(HelloReply {
                    protocol_version: self.version,
                    server: "toy 0.0.0".into(),
                })
            }
            Request::Search(search) => {
                if search.k == 0 {
                    return Response::error(ErrorCode::BadRequest, "k must be positive");
                }
                let category = search.category.unwrap_or_else(|| "shoes".into());
                let hits = (0..search.k.min(10))
                    .map(|i| SearchHit {
                        id: format!("item-{i}"),
                        score: 1.0 - i as f32 / 10.0,
                        category: category.clone(),
                        components: Vec::new(),
                    })
                    .collect();
                Response::SearchResults(SearchResponse {
                    query_id: 42,
                    hits,
                    category: None,
                    roi: search.options.roi,
                    timings: vec![("total".into(), 12)],
                    degraded: false,
                    epoch: 1,
                    weights_version: 1,
                })
            }
            Request::Upsert(upsert) => {
                *seq += 1;
                Response::Upserted(UpsertReply {
                    id: upsert.id,
                    seq: *seq,
                    replaced: false,
                })
            }
            Request::Delete(delete) if delete.id == "missing" => {
                Response::error(ErrorCode::UnknownItem, "no item `missing`")
            }
            Request::Delete(delete) => {
                *seq += 1;
                Response::Deleted(DeleteReply {
                    id: delete.id,
                    seq: *seq,
                    existed: true,
                })
            }
            Request::Metrics => Response::error(ErrorCode::BadRequest, "the toy keeps no metrics"),
            Request::Stats => Response::Stats(StatsReply {
                items: 3,
                shards: Vec::new(),
                inference: InferenceStats {
                    workers: 1,
                    queue_depth: 0,
                    queue_capacity: 8,
                    batches: 0,
                    images: 0,
                    busy_rejections: 0,
                },
                restarts: 0,
                qps: 0.5,
                uptime_ms: 1,
                epoch: 1,
            }),
            Request::Health => Response::Health(HealthReply {
                state: HealthState::Healthy,
                checks: vec![("model".into(), HealthState::Healthy, "loaded".into())],
            }),
            Request::Admin(admin) if admin.token != self.admin_token => {
                Response::error(ErrorCode::Unauthorized, "bad admin token")
            }
            Request::Admin(admin) => Response::Admin(AdminReply {
                message: format!("{:?}", admin.action),
                payload: None,
            }),
            Request::Click(click) => Response::Clicked(vsa_protocol::ClickReply {
                query_id: click.query_id,
                item_id: click.item_id,
                ctr: 0.5,
            }),
            Request::Clicks(clicks) => Response::ClicksAccepted(vsa_protocol::ClicksReply {
                accepted: clicks.len() as u32,
                repeated: 0,
                rejected: Vec::new(),
            }),
        }
    }

    pub(crate) async fn serve<S: AsyncRead + AsyncWrite + Unpin>(self, stream: S) -> Result<()> {
        let mut conn = Connection::with_limits(stream, self.limits);
        let mut seq = 0;
        loop {
            let request = match conn.read_request().await {
                Ok(Some(request)) => request,
                Ok(None) => return Ok(()),
                Err(e) => {
                    conn.write_response(&Response::Error(e.to_reply())).await?;
                    if conn.is_usable() {
                        continue;
                    }
                    return Ok(());
                }
            };
            if self.silent {
                continue;
            }
            let response = self.answer(request, &mut seq);
            conn.write_response(&response).await?;
        }
    }

    /// The client end of an in-memory stream served by this toy.
    pub(crate) fn duplex(self) -> DuplexStream {
        let (client, server) = tokio::io::duplex(64 << 10);
        tokio::spawn(self.serve(server));
        client
    }

    /// A loopback TCP listener served by this toy (async).
    pub(crate) async fn listen(self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(self.clone().serve(stream));
            }
        });
        addr
    }

    /// A loopback TCP listener served by this toy on a plain thread, with the blocking
    /// connection (one client at a time).
    pub(crate) fn listen_blocking(self) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let mut conn = BlockingConnection::with_limits(stream, self.limits);
                let mut seq = 0;
                loop {
                    let request = match conn.read_request() {
                        Ok(Some(request)) => request,
                        Ok(None) => break,
                        Err(e) => {
                            if conn.write_response(&Response::Error(e.to_reply())).is_err()
                                || !conn.is_usable()
                            {
                                break;
                            }
                            continue;
                        }
                    };
                    if self.silent {
                        continue;
                    }
                    if conn
                        .write_response(&self.answer(request, &mut seq))
                        .is_err()
                    {
                        break;
                    }
                }
            }
        });
        addr
    }
}
