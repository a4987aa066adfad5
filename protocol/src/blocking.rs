//! Blocking counterparts: [`BlockingConnection`] over any `std::io::Read + Write`, and
//! [`BlockingClient`] over `std::net::TcpStream` with connect and read/write timeouts.
//!
//! Same frame format, same boundary tracking and same client semantics as
//! [`crate::Connection`] and [`crate::Client`]; for scripts, the CLI and threads that have no
//! runtime. A socket timeout surfaces as [`ProtocolError::Timeout`] and leaves the connection
//! unusable.

use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::{ClientOptions, check_hello, settle, unexpected};
use crate::error::{ProtocolError, Result};
use crate::frame::{self, FrameLimits, ReadState, WRITE_INTERRUPTED};
use crate::types::{
    AdminAction, AdminReply, DeleteReply, DeleteRequest, HealthReply, HelloReply, Request,
    Response, SearchRequest, SearchResponse, StatsReply, UpsertReply, UpsertRequest,
};

/// A framed, buffered message stream over a blocking reader/writer.
#[derive(Debug)]
pub struct BlockingConnection<S: Read> {
    stream: BufReader<S>,
    limits: FrameLimits,
    read_state: ReadState,
    write_broken: Option<String>,
}

impl<S: Read + Write> BlockingConnection<S> {
    /// Wraps a stream with the default limits.
    pub fn new(stream: S) -> BlockingConnection<S> {
        BlockingConnection::with_limits(stream, FrameLimits::default())
    }

    /// Wraps a stream with these limits.
    pub fn with_limits(stream: S, limits: FrameLimits) -> BlockingConnection<S> {
        BlockingConnection {
            stream: BufReader::new(stream),
            limits,
            read_state: ReadState::Ready,
            write_broken: None,
        }
    }

    /// This connection's limits.
    pub fn limits(&self) -> FrameLimits {
        self.limits
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        self.stream.get_ref()
    }

    /// Whether another read can find a frame boundary (see [`crate::Connection::is_usable`]).
    pub fn is_usable(&self) -> bool {
        !matches!(self.read_state, ReadState::Broken(_)) && self.write_broken.is_none()
    }

    /// The length of an oversized body the next read will discard first, if any.
    pub fn pending_skip(&self) -> Option<u64> {
        match self.read_state {
            ReadState::Skip(len) => Some(len),
            _ => None,
        }
    }

    /// Reads one frame body; `Ok(None)` on a clean EOF at a frame boundary.
    pub fn read_frame(&mut self) -> Result<Option<Vec<u8>>> {
        match std::mem::replace(&mut self.read_state, ReadState::Ready) {
            ReadState::Ready => {}
            ReadState::Skip(len) => {
                if let Err(e) = frame::skip_body_blocking(&mut self.stream, len) {
                    self.read_state = ReadState::Broken(format!("skipping a frame failed: {e}"));
                    return Err(timeout_or(e));
                }
            }
            ReadState::Broken(why) => {
                self.read_state = ReadState::Broken(why.clone());
                return Err(ProtocolError::Desynchronized(why));
            }
        }
        match frame::read_frame_blocking(&mut self.stream, self.limits.max_frame) {
            Ok(body) => Ok(body),
            Err(ProtocolError::FrameTooLarge { len, max }) => {
                self.read_state = ReadState::after_oversize(len, &self.limits);
                Err(ProtocolError::FrameTooLarge { len, max })
            }
            Err(e) => {
                self.read_state = ReadState::Broken(format!("an earlier read failed: {e}"));
                Err(timeout_or(e))
            }
        }
    }

    /// Reads and decodes one message; `Ok(None)` on a clean EOF.
    pub fn read_message<T: DeserializeOwned>(&mut self) -> Result<Option<T>> {
        match self.read_frame()? {
            Some(body) => frame::decode_body(&body).map(Some),
            None => Ok(None),
        }
    }

    /// Server side: reads the next request.
    pub fn read_request(&mut self) -> Result<Option<Request>> {
        self.read_message()
    }

    /// Client side: reads the next response.
    pub fn read_response(&mut self) -> Result<Option<Response>> {
        self.read_message()
    }

    /// Writes bytes that are already framed (as [`frame::encode_frame`] makes them) and
    /// flushes.
    pub fn write_raw(&mut self, frame: &[u8]) -> Result<()> {
        if let Some(why) = &self.write_broken {
            return Err(ProtocolError::Desynchronized(why.clone()));
        }
        let stream = self.stream.get_mut();
        match stream.write_all(frame).and_then(|()| stream.flush()) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.write_broken = Some(format!("{WRITE_INTERRUPTED}: {e}"));
                Err(timeout_or(e.into()))
            }
        }
    }

    /// Encodes and writes one message (refused before writing if over `max_frame`).
    pub fn write_message<T: Serialize + ?Sized>(&mut self, message: &T) -> Result<()> {
        let frame = frame::encode_frame(message, self.limits.max_frame)?;
        self.write_raw(&frame)
    }

    /// Client side: writes a request.
    pub fn write_request(&mut self, request: &Request) -> Result<()> {
        self.write_message(request)
    }

    /// Server side: writes a response.
    pub fn write_response(&mut self, response: &Response) -> Result<()> {
        self.write_message(response)
    }
}

/// Socket timeouts surface from std as `WouldBlock` (Unix) or `TimedOut` (Windows).
fn timeout_or(e: ProtocolError) -> ProtocolError {
    match e {
        ProtocolError::Io(io)
            if matches!(io.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            ProtocolError::Timeout
        }
        other => other,
    }
}

/// A blocking connection to a vsa server; the same methods as [`crate::Client`].
#[derive(Debug)]
pub struct BlockingClient<S: Read = TcpStream> {
    conn: BlockingConnection<S>,
    options: ClientOptions,
    server: HelloReply,
    in_flight: usize,
}

impl BlockingClient<TcpStream> {
    /// Connects with default options and performs the Hello handshake.
    pub fn connect(addr: impl ToSocketAddrs) -> Result<BlockingClient> {
        BlockingClient::connect_with(addr, ClientOptions::default())
    }

    /// Connects with these options (trying each resolved address in turn, each under
    /// `connect_timeout`), sets the read/write timeouts to `request_timeout`, and performs
    /// the Hello handshake.
    pub fn connect_with(
        addr: impl ToSocketAddrs,
        options: ClientOptions,
    ) -> Result<BlockingClient> {
        let mut last = None;
        let mut connected = None;
        for addr in addr.to_socket_addrs()? {
            let attempt = match options.connect_timeout {
                Some(limit) => TcpStream::connect_timeout(&addr, limit),
                None => TcpStream::connect(addr),
            };
            match attempt {
                Ok(stream) => {
                    connected = Some(stream);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let stream = match (connected, last) {
            (Some(stream), _) => stream,
            (None, Some(e)) => return Err(timeout_or(e.into())),
            (None, None) => {
                return Err(std::io::Error::new(
                    ErrorKind::InvalidInput,
                    "address resolved to nothing",
                )
                .into());
            }
        };
        stream.set_nodelay(true)?;
        stream.set_read_timeout(options.request_timeout)?;
        stream.set_write_timeout(options.request_timeout)?;
        BlockingClient::handshake(stream, options)
    }
}

impl<S: Read + Write> BlockingClient<S> {
    /// Performs the Hello handshake over an already connected stream (whose timeouts, if
    /// any, are the caller's business).
    pub fn handshake(stream: S, options: ClientOptions) -> Result<BlockingClient<S>> {
        let mut client = BlockingClient {
            conn: BlockingConnection::with_limits(stream, options.limits),
            server: HelloReply {
                protocol_version: 0,
                server: String::new(),
            },
            options,
            in_flight: 0,
        };
        let hello = client.options.hello();
        let reply = client.call(Request::Hello(hello))?;
        client.server = check_hello(reply)?;
        Ok(client)
    }

    /// The server's handshake answer.
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

    /// Sends a request without waiting for its response (pipelining).
    pub fn send(&mut self, request: Request) -> Result<()> {
        self.conn.write_request(&request)?;
        self.in_flight += 1;
        Ok(())
    }

    /// Sends a request already encoded as a whole frame by [`frame::encode_frame`], without
    /// waiting for its response (pipelining): for load generators, which encode their
    /// requests ahead of time so the encoding is not part of what they measure. The frame
    /// must hold exactly one `Request`; the server answers anything else with an error (or
    /// closes the connection), which the next [`recv`](Self::recv) reports.
    pub fn send_encoded(&mut self, frame: &[u8]) -> Result<()> {
        self.conn.write_raw(frame)?;
        self.in_flight += 1;
        Ok(())
    }

    /// Receives the response to the oldest request in flight (server errors as values).
    pub fn recv(&mut self) -> Result<Response> {
        if self.in_flight == 0 {
            return Err(ProtocolError::Desynchronized(
                "recv with no request in flight".into(),
            ));
        }
        let read = self.conn.read_response();
        settle(&mut self.in_flight, read)
    }

    /// Sends one request and waits for its response (server errors as values).
    pub fn call(&mut self, request: Request) -> Result<Response> {
        if self.in_flight > 0 {
            return Err(ProtocolError::Desynchronized(format!(
                "call with {} pipelined requests outstanding; recv them first",
                self.in_flight
            )));
        }
        self.send(request)?;
        self.recv()
    }

    /// Visual search.
    pub fn search(&mut self, request: SearchRequest) -> Result<SearchResponse> {
        match self.call(Request::Search(request))? {
            Response::SearchResults(r) => Ok(r),
            other => Err(unexpected("search_results", other)),
        }
    }

    /// Inserts or replaces an item.
    pub fn upsert(&mut self, request: UpsertRequest) -> Result<UpsertReply> {
        match self.call(Request::Upsert(request))? {
            Response::Upserted(r) => Ok(r),
            other => Err(unexpected("upserted", other)),
        }
    }

    /// Deletes an item.
    pub fn delete(&mut self, id: impl Into<String>) -> Result<DeleteReply> {
        match self.call(Request::Delete(DeleteRequest { id: id.into() }))? {
            Response::Deleted(r) => Ok(r),
            other => Err(unexpected("deleted", other)),
        }
    }

    /// Server statistics.
    pub fn stats(&mut self) -> Result<StatsReply> {
        match self.call(Request::Stats)? {
            Response::Stats(r) => Ok(r),
            other => Err(unexpected("stats", other)),
        }
    }

    /// Server health.
    pub fn health(&mut self) -> Result<HealthReply> {
        match self.call(Request::Health)? {
            Response::Health(r) => Ok(r),
            other => Err(unexpected("health", other)),
        }
    }

    /// Reports a click on a search result.
    pub fn click(&mut self, click: crate::ClickRequest) -> Result<crate::ClickReply> {
        match self.call(Request::Click(click))? {
            Response::Clicked(r) => Ok(r),
            other => Err(unexpected("click", other)),
        }
    }

    /// Reports a batch of clicks (at most [`crate::MAX_CLICK_BATCH`]).
    pub fn clicks(&mut self, clicks: Vec<crate::ClickRequest>) -> Result<crate::ClicksReply> {
        match self.call(Request::Clicks(clicks))? {
            Response::ClicksAccepted(r) => Ok(r),
            other => Err(unexpected("clicks", other)),
        }
    }

    /// An admin action, authorised with [`ClientOptions::admin_token`].
    pub fn admin(&mut self, action: AdminAction) -> Result<AdminReply> {
        let request = self.options.admin_request(action);
        match self.call(Request::Admin(request))? {
            Response::Admin(r) => Ok(r),
            other => Err(unexpected("admin", other)),
        }
    }

    /// Monitoring counters (no admin token): [`crate::Telemetry`] without the log tail.
    pub fn metrics(&mut self) -> Result<crate::Telemetry> {
        match self.call(Request::Metrics)? {
            Response::Telemetry(t) => Ok(*t),
            other => Err(unexpected("telemetry", other)),
        }
    }

    /// The server's telemetry (an admin request): see [`crate::Telemetry`].
    pub fn telemetry(&mut self, log_after: u64) -> Result<crate::Telemetry> {
        let request = self
            .options
            .admin_request(AdminAction::Telemetry { log_after });
        match self.call(Request::Admin(request))? {
            Response::Telemetry(t) => Ok(*t),
            other => Err(unexpected("telemetry", other)),
        }
    }
}
