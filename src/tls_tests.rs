//! The lean TLS stream against itself over real loopback sockets, under both drivers:
//! handshakes, large transfers through split halves (rustls's plaintext buffer fills, so
//! `pending` is used), close_notify vs a bare TCP close, and a bad certificate.

use std::sync::Arc;

use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, Splitable};
use monoio::net::{TcpListener, TcpStream};
use rustls::pki_types::ServerName;

use super::{TlsAcceptor, TlsConnector};

fn material() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    let t = tollgate_loadtest::tls::test_tls().expect("test certificates");
    (
        t.server_config().expect("server config"),
        t.client_config().expect("client config"),
    )
}

fn localhost() -> ServerName<'static> {
    ServerName::try_from("localhost").expect("name")
}

/// Run `f` on an io_uring runtime, then on an epoll one.
pub(crate) fn on_both_drivers(f: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>) {
    let mut uring = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
        .enable_timer()
        .build()
        .expect("io_uring runtime");
    uring.block_on(f());
    let mut legacy = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("epoll runtime");
    legacy.block_on(f());
}

/// Read until EOF or error; returns the bytes and the final result.
async fn read_to_end<R: AsyncReadRent>(r: &mut R) -> (Vec<u8>, std::io::Result<()>) {
    let mut all = Vec::new();
    loop {
        let (res, buf) = r.read(Vec::with_capacity(3000)).await;
        match res {
            Ok(0) => return (all, Ok(())),
            Ok(_) => all.extend_from_slice(&buf),
            Err(e) => return (all, Err(e)),
        }
    }
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn large_transfers_both_ways_through_split_halves() {
    on_both_drivers(|| {
        Box::pin(async {
            let (server_cfg, client_cfg) = material();
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let up = pattern(700_000, 1);
            let down = pattern(900_000, 7);
            let (up2, down2) = (up.clone(), down.clone());
            let server = monoio::spawn(async move {
                let (tcp, _) = listener.accept().await.expect("accept");
                let s = TlsAcceptor::from(server_cfg)
                    .accept(tcp)
                    .await
                    .expect("tls accept");
                let (mut r, mut w) = s.into_split();
                // Write while the client is still writing: both directions at once.
                let writer = monoio::spawn(async move {
                    for chunk in down2.chunks(50_000) {
                        let (res, _) = w.write_all(chunk.to_vec()).await;
                        res.expect("server write");
                    }
                    w.shutdown().await.expect("server shutdown");
                });
                let (got, res) = read_to_end(&mut r).await;
                res.expect("server read ends with close_notify");
                writer.await;
                got
            });
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let c = TlsConnector::from(client_cfg)
                .connect(localhost(), tcp)
                .await
                .expect("tls connect");
            let (mut r, mut w) = c.into_split();
            let writer = monoio::spawn(async move {
                for chunk in up2.chunks(65_536) {
                    let (res, _) = w.write_all(chunk.to_vec()).await;
                    res.expect("client write");
                }
                w.shutdown().await.expect("client shutdown");
            });
            let (got, res) = read_to_end(&mut r).await;
            res.expect("client read ends with close_notify");
            writer.await;
            assert_eq!(got.len(), down.len());
            assert!(got == down, "server → client bytes differ");
            let at_server = server.await;
            assert!(at_server == up, "client → server bytes differ");
        })
    });
}

#[test]
fn bare_tcp_close_is_unexpected_eof() {
    on_both_drivers(|| {
        Box::pin(async {
            let (server_cfg, client_cfg) = material();
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = monoio::spawn(async move {
                let (tcp, _) = listener.accept().await.expect("accept");
                let s = TlsAcceptor::from(server_cfg)
                    .accept(tcp)
                    .await
                    .expect("tls accept");
                let mut s = s;
                let (res, _) = s.write_all(b"hello".to_vec()).await;
                res.expect("write");
                // Drop without close_notify: a truncation attack looks like this.
                drop(s);
            });
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let mut c = TlsConnector::from(client_cfg)
                .connect(localhost(), tcp)
                .await
                .expect("tls connect");
            server.await;
            let (got, res) = read_to_end(&mut c).await;
            assert_eq!(got, b"hello");
            let e = res.expect_err("a bare close is not a clean end");
            assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof);
        })
    });
}

#[test]
fn untrusted_certificate_fails_the_handshake() {
    on_both_drivers(|| {
        Box::pin(async {
            let (server_cfg, _) = material();
            // A client that trusts a different CA.
            let (_, other_client) = material();
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let server = monoio::spawn(async move {
                let (tcp, _) = listener.accept().await.expect("accept");
                TlsAcceptor::from(server_cfg).accept(tcp).await.is_err()
            });
            let tcp = TcpStream::connect(addr).await.expect("connect");
            let r = TlsConnector::from(other_client)
                .connect(localhost(), tcp)
                .await;
            let e = r.err().expect("handshake must fail");
            assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
            assert!(server.await, "server sees the failed handshake");
        })
    });
}
