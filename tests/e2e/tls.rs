//! TLS on the TCP protocol: a server configured with a certificate speaks the same frames
//! inside rustls; a client that trusts the certificate searches and writes, a plaintext client
//! is refused by the handshake, and the server keeps serving.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use vsa_protocol::{BlockingClient, ClientOptions, QueryInput, SearchRequest};

use crate::support::{Server, TempDir, embedding, item};

type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn tls_client(server: &Server, ca_pem: &str) -> BlockingClient<TlsStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    BlockingClient::handshake(
        rustls::StreamOwned::new(conn, tcp),
        ClientOptions::default(),
    )
    .expect("Hello over TLS")
}

#[test]
fn the_protocol_runs_inside_tls_and_plaintext_is_refused() {
    let dir = TempDir::new("tls");
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_pem, key_pem) = (key.cert.pem(), key.signing_key.serialize_pem());
    let (cert, keyf) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &cert_pem).unwrap();
    std::fs::write(&keyf, &key_pem).unwrap();
    let config = format!(
        "[security]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        keyf.display()
    );
    let server = Server::start(&config);

    let mut client = tls_client(&server, &cert_pem);
    for n in 0..5 {
        client.upsert(item(n, "things")).unwrap();
    }
    let r = client
        .search(SearchRequest::new(QueryInput::Embedding(embedding(3)), 2))
        .unwrap();
    assert_eq!(r.hits[0].id, "item-00003");

    // A plaintext client: its Hello frame is not a TLS ClientHello; the server drops it.
    let mut plain = TcpStream::connect(server.addr).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let hello = vsa_protocol::frame::encode_frame(
        &vsa_protocol::Request::Hello(vsa_protocol::Hello::new("plain", None)),
        vsa_protocol::DEFAULT_MAX_FRAME,
    )
    .unwrap();
    let _ = plain.write_all(&hello);
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(
        n == 0 || buf[0] == 0x15,
        "no protocol answer in plaintext (a TLS alert or a close): {:?}",
        &buf[..n]
    );

    // The TLS client is unaffected, and a new one gets in.
    assert_eq!(client.stats().unwrap().items, 5);
    assert_eq!(tls_client(&server, &cert_pem).stats().unwrap().items, 5);
}
