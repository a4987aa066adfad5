//! Every Request and Response variant survives the frame codec, blocking and async.

use std::io::Cursor;

use proptest::prelude::*;
use vsa_protocol::*;

use crate::support::strategies;

proptest! {
    #[test]
    fn requests_round_trip_through_frames(request in strategies::request()) {
        let frame = frame::encode_frame(&request, DEFAULT_MAX_FRAME).expect("encode");
        let mut conn = BlockingConnection::new(Cursor::new(frame));
        prop_assert_eq!(conn.read_request().expect("read"), Some(request));
        prop_assert_eq!(conn.read_request().expect("eof"), None);
    }

    #[test]
    fn responses_round_trip_through_frames(response in strategies::response()) {
        let frame = frame::encode_frame(&response, DEFAULT_MAX_FRAME).expect("encode");
        let mut conn = BlockingConnection::new(Cursor::new(frame));
        prop_assert_eq!(conn.read_response().expect("read"), Some(response));
    }

    #[test]
    fn messages_round_trip_through_an_async_connection(
        requests in proptest::collection::vec(strategies::request(), 1..4),
        responses in proptest::collection::vec(strategies::response(), 1..4),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let (a, b) = tokio::io::duplex(1 << 20);
            let mut client = Connection::new(a);
            let mut server = Connection::new(b);
            for request in &requests {
                client.write_request(request).await.expect("write");
            }
            for response in &responses {
                server.write_response(response).await.expect("write");
            }
            for request in &requests {
                assert_eq!(server.read_request().await.expect("read").as_ref(), Some(request));
            }
            for response in &responses {
                assert_eq!(client.read_response().await.expect("read").as_ref(), Some(response));
            }
        });
    }
}
