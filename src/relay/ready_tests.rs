//! `park` over real loopback sockets (plain and TLS), under both drivers: an idle stream
//! gives its buffer back while waiting, data brings it back at the same capacity.

use std::time::Duration;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::{TcpListener, TcpStream};
use rustls::pki_types::ServerName;

use super::{park, Parked};
use crate::tls::tests::on_both_drivers;
use crate::tls::{TlsAcceptor, TlsConnector};

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    let (a, b) = monoio::join!(TcpStream::connect(addr), l.accept());
    (a.expect("connect"), b.expect("accept").0)
}

/// Park `b` (giving up after 5 s), then read once: the outcome and the bytes read.
async fn park_then_read(b: &mut TcpStream) -> (Parked, usize) {
    let mut buf = Vec::with_capacity(4096);
    let r = park(b, &mut buf, monoio::time::sleep(Duration::from_secs(5))).await;
    let (n, _) = b.read(buf).await;
    (r, n.expect("read"))
}

#[test]
fn an_idle_plain_stream_holds_no_buffer_and_data_brings_it_back() {
    on_both_drivers(|| {
        Box::pin(async {
            let (mut a, mut b) = pair().await;
            // A read that drained the socket first: under epoll the runtime's cached
            // readiness still says "readable" afterwards, which must not count as data.
            let (r, _) = a.write_all(b"y".to_vec()).await;
            r.expect("write");
            let (n, _) = b.read(Vec::with_capacity(64)).await;
            assert_eq!(n.expect("read"), 1);
            // Idle: the stop fires while parked, and the buffer is gone.
            let mut buf = Vec::with_capacity(4096);
            let r = park(
                &mut b,
                &mut buf,
                monoio::time::sleep(Duration::from_millis(30)),
            )
            .await;
            assert_eq!(r, Parked::Stopped);
            assert_eq!(buf.capacity(), 0, "an idle stream keeps no read buffer");
            // Data arrives while parked: ready, with the same capacity as before.
            let mut buf = Vec::with_capacity(4096);
            let writer = async {
                monoio::time::sleep(Duration::from_millis(20)).await;
                let (r, _) = a.write_all(b"x".to_vec()).await;
                r.expect("write");
            };
            let never = std::future::pending::<()>();
            let (r, ()) = monoio::join!(park(&mut b, &mut buf, never), writer);
            assert_eq!(r, Parked::Ready);
            assert!(buf.capacity() >= 4096);
            let (n, _) = b.read(buf).await;
            assert_eq!(n.expect("read"), 1);
        })
    });
}

#[test]
fn an_end_of_stream_behind_a_short_read_is_still_seen() {
    // Data and FIN arrive together: the short read that takes the data clears "readable"
    // (vendored monoio), but not the pending end of stream — park must not wait for an
    // event that already came.
    on_both_drivers(|| {
        Box::pin(async {
            let (mut a, mut b) = pair().await;
            let (r, _) = a.write_all(b"last".to_vec()).await;
            r.expect("write");
            a.shutdown().await.expect("shutdown");
            drop(a);
            monoio::time::sleep(Duration::from_millis(20)).await;
            let (n, _) = b.read(Vec::with_capacity(64)).await;
            assert_eq!(n.expect("read"), 4);
            assert_eq!(
                park_then_read(&mut b).await,
                (Parked::Ready, 0),
                "the end of stream counts as readable"
            );
        })
    });
}

#[test]
fn a_read_that_filled_its_buffer_leaves_the_rest_readable() {
    // Not a short read: bytes may remain, so the stream must stay ready without an event.
    on_both_drivers(|| {
        Box::pin(async {
            let (mut a, mut b) = pair().await;
            let (r, _) = a.write_all(vec![7u8; 100]).await;
            r.expect("write");
            monoio::time::sleep(Duration::from_millis(20)).await;
            let (n, _) = b.read(Vec::with_capacity(60)).await;
            assert_eq!(n.expect("read"), 60);
            assert_eq!(park_then_read(&mut b).await, (Parked::Ready, 40));
        })
    });
}

#[test]
fn an_idle_tls_stream_holds_no_buffer_and_plaintext_wakes_it() {
    on_both_drivers(|| {
        Box::pin(async {
            let t = tollgate_loadtest::tls::test_tls().expect("certificates");
            let acceptor = TlsAcceptor::from(t.server_config().expect("server config"));
            let connector = TlsConnector::from(t.client_config().expect("client config"));
            let (a, b) = pair().await;
            let name = ServerName::try_from("localhost").expect("name");
            let (c, s) = monoio::join!(connector.connect(name, a), acceptor.accept(b));
            let (mut c, mut s) = (c.expect("client"), s.expect("server"));
            let mut buf = Vec::with_capacity(4096);
            let r = park(
                &mut s,
                &mut buf,
                monoio::time::sleep(Duration::from_millis(30)),
            )
            .await;
            assert_eq!(r, Parked::Stopped);
            assert_eq!(buf.capacity(), 0);
            let mut buf = Vec::with_capacity(4096);
            let writer = async {
                monoio::time::sleep(Duration::from_millis(20)).await;
                let (r, _) = c.write_all(b"hello".to_vec()).await;
                r.expect("write");
            };
            let never = std::future::pending::<()>();
            let (r, ()) = monoio::join!(park(&mut s, &mut buf, never), writer);
            assert_eq!(r, Parked::Ready);
            // The plaintext is already inside rustls: the read completes from it.
            let (n, buf) = s.read(buf).await;
            assert_eq!(n.expect("read"), 5);
            assert_eq!(&buf[..], b"hello");
        })
    });
}
