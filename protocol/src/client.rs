//! The async [`Client`]: Hello handshake, typed calls, raw calls and pipelining.
//!
//! Responses come back in request order on one connection, so pipelining is
//! [`Client::send`] N requests, then [`Client::recv`] N responses. [`Client::call`] is one
//! `send` + `recv` and refuses to run while pipelined requests are outstanding (their
//! responses would be taken for its own).
//!
//! Error handling: `call`/`recv` return a server's failure as a value (`Response::Error`), so
//! scripts can branch on its code; the typed methods turn it into
//! [`ProtocolError::Server`]. A timeout leaves the connection unusable (a late answer would be
//! paired with the next request): reconnect.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};

use crate::connection::Connection;
use crate::error::{ProtocolError, Result};
use crate::frame::FrameLimits;
use crate::types::{
    AdminAction, AdminReply, AdminRequest, DeleteReply, DeleteRequest, HealthReply, Hello,
    HelloReply, PROTOCOL_VERSION, Request, Response, SearchRequest, SearchResponse, StatsReply,
    UpsertReply, UpsertRequest,
};

/// How a client connects and behaves; shared by [`Client`] and
/// [`crate::blocking::BlockingClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Sent in [`Hello::client`], e.g. `"vsa-tui 0.1.0"`.
    pub client_name: String,
    /// Sent in [`Hello::token`].
    pub token: Option<String>,
    /// Put into [`AdminRequest::token`] by [`Client::admin`]; an empty token is sent when
    /// absent (the server answers `unauthorized`).
    pub admin_token: Option<String>,
    /// Frame limits of the connection.
    pub limits: FrameLimits,
    /// Limit on establishing the TCP connection (each resolved address).
    pub connect_timeout: Option<Duration>,
    /// Limit on each send and each receive, the handshake included.
    pub request_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            client_name: concat!("vsa-protocol ", env!("CARGO_PKG_VERSION")).to_owned(),
            token: None,
            admin_token: None,
            limits: FrameLimits::default(),
            connect_timeout: Some(Duration::from_secs(10)),
            request_timeout: Some(Duration::from_secs(30)),
        }
    }
}

impl ClientOptions {
    /// Default options with this client name.
    pub fn named(client_name: impl Into<String>) -> ClientOptions {
        ClientOptions {
            client_name: client_name.into(),
            ..ClientOptions::default()
        }
    }

    pub(crate) fn hello(&self) -> Hello {
        Hello::new(self.client_name.clone(), self.token.clone())
    }

    pub(crate) fn admin_request(&self, action: AdminAction) -> AdminRequest {
        AdminRequest {
            token: self.admin_token.clone().unwrap_or_default(),
            action,
        }
    }
}

/// An async connection to a vsa server (see the module docs).
#[derive(Debug)]
pub struct Client<S = TcpStream> {
    conn: Connection<S>,
    options: ClientOptions,
    server: HelloReply,
    in_flight: usize,
}

impl Client<TcpStream> {
    /// Connects with default options and performs the Hello handshake.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client> {
        Client::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects with these options and performs the Hello handshake.
    pub async fn connect_with(addr: impl ToSocketAddrs, options: ClientOptions) -> Result<Client> {
        let stream = with_timeout(options.connect_timeout, TcpStream::connect(addr)).await??;
        stream.set_nodelay(true)?;
        Client::handshake(stream, options).await
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    /// Performs the Hello handshake over an already connected stream.
    ///
    /// Fails with [`ProtocolError::VersionMismatch`] if the server speaks another version,
    /// or [`ProtocolError::Server`] if it refuses (e.g. `unauthorized`).
    pub async fn handshake(stream: S, options: ClientOptions) -> Result<Client<S>> {
        let mut client = Client {
            conn: Connection::with_limits(stream, options.limits),
            server: HelloReply {
                protocol_version: 0,
                server: String::new(),
            },
            options,
            in_flight: 0,
        };
        let hello = client.options.hello();
        let reply = client.call(Request::Hello(hello)).await?;
        client.server = check_hello(reply)?;
        Ok(client)
    }

    /// The server's handshake answer (its name and version).
    pub fn server(&self) -> &HelloReply {
        &self.server
    }

    /// The options this client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Requests sent whose responses have not been received yet.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Whether the connection can still be used.
    pub fn is_usable(&self) -> bool {
        self.conn.is_usable()
    }

    /// Sends a request without waiting for its response (pipelining); pair every `send`
    /// with one [`Client::recv`].
    pub async fn send(&mut self, request: Request) -> Result<()> {
        let write = self.conn.write_request(&request);
        with_timeout(self.options.request_timeout, write).await??;
        self.in_flight += 1;
        Ok(())
    }

    /// Receives the response to the oldest request in flight; a server error is returned as
    /// `Response::Error`.
    pub async fn recv(&mut self) -> Result<Response> {
        if self.in_flight == 0 {
            return Err(ProtocolError::Desynchronized(
                "recv with no request in flight".into(),
            ));
        }
        let read = self.conn.read_response();
        let read = with_timeout(self.options.request_timeout, read).await?;
        self.settle(read)
    }

    /// Sends one request and waits for its response; a server error is returned as
    /// `Response::Error` (use the typed methods to get it as [`ProtocolError::Server`]).
    pub async fn call(&mut self, request: Request) -> Result<Response> {
        self.check_idle()?;
        self.send(request).await?;
        self.recv().await
    }

    /// Visual search.
    pub async fn search(&mut self, request: SearchRequest) -> Result<SearchResponse> {
        match self.call(Request::Search(request)).await? {
            Response::SearchResults(r) => Ok(r),
            other => Err(unexpected("search_results", other)),
        }
    }

    /// Inserts or replaces an item; durable when this returns.
    pub async fn upsert(&mut self, request: UpsertRequest) -> Result<UpsertReply> {
        match self.call(Request::Upsert(request)).await? {
            Response::Upserted(r) => Ok(r),
            other => Err(unexpected("upserted", other)),
        }
    }

    /// Deletes an item.
    pub async fn delete(&mut self, id: impl Into<String>) -> Result<DeleteReply> {
        let request = Request::Delete(DeleteRequest { id: id.into() });
        match self.call(request).await? {
            Response::Deleted(r) => Ok(r),
            other => Err(unexpected("deleted", other)),
        }
    }

    /// Server statistics.
    pub async fn stats(&mut self) -> Result<StatsReply> {
        match self.call(Request::Stats).await? {
            Response::Stats(r) => Ok(r),
            other => Err(unexpected("stats", other)),
        }
    }

    /// Server health.
    pub async fn health(&mut self) -> Result<HealthReply> {
        match self.call(Request::Health).await? {
            Response::Health(r) => Ok(r),
            other => Err(unexpected("health", other)),
        }
    }

    /// Reports a click on a search result.
    pub async fn click(&mut self, click: crate::ClickRequest) -> Result<crate::ClickReply> {
        match self.call(Request::Click(click)).await? {
            Response::Clicked(r) => Ok(r),
            other => Err(unexpected("click", other)),
        }
    }

    /// An admin action, authorised with [`ClientOptions::admin_token`].
    pub async fn admin(&mut self, action: AdminAction) -> Result<AdminReply> {
        let request = self.options.admin_request(action);
        match self.call(Request::Admin(request)).await? {
            Response::Admin(r) => Ok(r),
            other => Err(unexpected("admin", other)),
        }
    }

    /// Monitoring counters (no admin token): [`crate::Telemetry`] without the log tail.
    pub async fn metrics(&mut self) -> Result<crate::Telemetry> {
        match self.call(Request::Metrics).await? {
            Response::Telemetry(t) => Ok(*t),
            other => Err(unexpected("telemetry", other)),
        }
    }

    /// The server's telemetry (an admin request): see [`crate::Telemetry`].
    pub async fn telemetry(&mut self, log_after: u64) -> Result<crate::Telemetry> {
        let request = self
            .options
            .admin_request(AdminAction::Telemetry { log_after });
        match self.call(Request::Admin(request)).await? {
            Response::Telemetry(t) => Ok(*t),
            other => Err(unexpected("telemetry", other)),
        }
    }

    fn check_idle(&self) -> Result<()> {
        if self.in_flight > 0 {
            return Err(ProtocolError::Desynchronized(format!(
                "call with {} pipelined requests outstanding; recv them first",
                self.in_flight
            )));
        }
        Ok(())
    }

    fn settle(&mut self, read: Result<Option<Response>>) -> Result<Response> {
        settle(&mut self.in_flight, read)
    }
}

/// Accounts for one response read: a whole frame (even an undecodable or skipped one) was
/// the answer to the oldest request.
pub(crate) fn settle(in_flight: &mut usize, read: Result<Option<Response>>) -> Result<Response> {
    match read {
        Ok(Some(response)) => {
            *in_flight -= 1;
            Ok(response)
        }
        Ok(None) => Err(ProtocolError::Closed),
        Err(e) => {
            if matches!(
                e,
                ProtocolError::Decode(_) | ProtocolError::FrameTooLarge { .. }
            ) {
                *in_flight -= 1;
            }
            Err(e)
        }
    }
}

/// Checks the answer to a Hello.
pub(crate) fn check_hello(response: Response) -> Result<HelloReply> {
    match response {
        Response::Hello(reply) if reply.protocol_version == PROTOCOL_VERSION => Ok(reply),
        Response::Hello(reply) => Err(ProtocolError::VersionMismatch {
            ours: PROTOCOL_VERSION,
            theirs: reply.protocol_version,
        }),
        other => Err(unexpected("hello", other)),
    }
}

/// The error for a response of the wrong kind (a server error becomes `Server`).
pub(crate) fn unexpected(wanted: &str, got: Response) -> ProtocolError {
    match got {
        Response::Error(reply) => ProtocolError::Server(reply),
        other => ProtocolError::UnexpectedResponse(format!(
            "expected a {wanted} response, got {}",
            other.kind()
        )),
    }
}

async fn with_timeout<F: Future>(limit: Option<Duration>, fut: F) -> Result<F::Output> {
    match limit {
        Some(limit) => tokio::time::timeout(limit, fut)
            .await
            .map_err(|_| ProtocolError::Timeout),
        None => Ok(fut.await),
    }
}
