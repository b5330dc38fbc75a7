//! The TLS leg without sockets: a rustls client and server joined in memory, records split
//! at arbitrary points as receives would split them, key updates, `close_notify`, bad
//! records and plaintext handed over from the handshake.

use std::io::Write;

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConnection};

use super::{LegTls, TlsIn, TlsLegError};

/// Move what `from` has queued into `to`, processing it.
fn shuttle(from: &mut Connection, to: &mut Connection) {
    let mut wire = Vec::new();
    while from.wants_write() {
        from.write_tls(&mut wire).expect("write_tls");
    }
    let mut rd = &wire[..];
    while !rd.is_empty() {
        to.read_tls(&mut rd).expect("read_tls");
        to.process_new_packets().expect("process");
    }
}

/// A client and a server connection with their handshake done, in memory.
fn pair() -> (Connection, Connection) {
    let t = tollgate_loadtest::tls::test_tls().expect("test certificates");
    let name = ServerName::try_from("localhost").expect("name");
    let mut c = Connection::Client(
        ClientConnection::new(t.client_config().expect("client config"), name)
            .expect("client connection"),
    );
    let mut s = Connection::Server(
        ServerConnection::new(t.server_config().expect("server config"))
            .expect("server connection"),
    );
    for _ in 0..10 {
        if !c.is_handshaking() && !s.is_handshaking() && !c.wants_write() && !s.wants_write() {
            break;
        }
        shuttle(&mut c, &mut s);
        shuttle(&mut s, &mut c);
    }
    assert!(!c.is_handshaking() && !s.is_handshaking(), "handshake done");
    (c, s)
}

/// A joined pair as data-plane legs: (client, server).
fn legs() -> (Box<LegTls>, Box<LegTls>) {
    let (c, s) = pair();
    (LegTls::new(c, Vec::new()), LegTls::new(s, Vec::new()))
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Feed `wire` to `leg` in pieces of the given sizes (cycled), collecting the plaintext.
fn feed_split(leg: &mut LegTls, wire: &[u8], sizes: &[usize]) -> (Vec<u8>, TlsIn) {
    let mut plain = Vec::new();
    let mut last = TlsIn::Open;
    let mut off = 0;
    for &n in sizes.iter().cycle() {
        if off >= wire.len() {
            break;
        }
        let end = (off + n).min(wire.len());
        last = leg.recv(&wire[off..end], &mut plain).expect("recv");
        off = end;
    }
    (plain, last)
}

#[test]
fn records_split_anywhere_come_out_as_the_plaintext_sent() {
    let (mut client, mut server) = legs();
    // Several records, one larger than a TLS record (16 KiB) and than any ring buffer.
    let msgs = [
        pattern(190, 1),
        pattern(40_000, 2),
        pattern(1, 3),
        pattern(5_000, 4),
    ];
    let mut wire = Vec::new();
    for m in &msgs {
        server.seal(m, &mut wire).expect("seal");
    }
    let want: Vec<u8> = msgs.concat();
    assert!(wire.len() > want.len(), "records carry headers and tags");
    for sizes in [&[1usize][..], &[7, 4096, 3], &[4096], &[wire.len()]] {
        let (mut client, mut server) = legs();
        let mut wire = Vec::new();
        for m in &msgs {
            server.seal(m, &mut wire).expect("seal");
        }
        let (plain, state) = feed_split(&mut client, &wire, sizes);
        assert_eq!(state, TlsIn::Open);
        assert!(plain == want, "split {sizes:?}: plaintext differs");
    }
    // And the other way, client → server.
    let mut up = Vec::new();
    client.seal(b"response.create", &mut up).expect("seal");
    let (plain, _) = feed_split(&mut server, &up, &[5]);
    assert_eq!(plain, b"response.create");
}

#[test]
fn close_notify_ends_the_stream_after_its_plaintext() {
    let (mut client, mut server) = legs();
    let mut wire = Vec::new();
    server.seal(b"last words", &mut wire).expect("seal");
    server.close_notify(&mut wire).expect("close_notify");
    // A second call queues nothing.
    let before = wire.len();
    server.close_notify(&mut wire).expect("close_notify again");
    assert_eq!(wire.len(), before);
    let mut plain = Vec::new();
    let state = client.recv(&wire, &mut plain).expect("recv");
    assert_eq!(state, TlsIn::Closed);
    assert!(client.peer_closed());
    assert_eq!(plain, b"last words");
    // Nothing is taken after it, and no error either.
    assert_eq!(
        client.recv(b"trailing", &mut plain).expect("recv"),
        TlsIn::Closed
    );
    assert_eq!(plain, b"last words");
}

#[test]
fn a_key_update_is_answered_and_both_directions_go_on() {
    let (c, mut s) = pair();
    // The server asks for new keys (TLS 1.3 KeyUpdate, update requested).
    s.refresh_traffic_keys().expect("key update");
    let mut server = LegTls::new(s, Vec::new());
    let mut client = LegTls::new(c, Vec::new());
    let mut wire = Vec::new();
    server.take_pending(&mut wire).expect("pending");
    assert!(!wire.is_empty(), "the key update goes out");
    server.seal(b"after the update", &mut wire).expect("seal");
    let mut plain = Vec::new();
    client.recv(&wire, &mut plain).expect("recv");
    assert_eq!(plain, b"after the update");
    // The client's answer (its own KeyUpdate) leaves in front of its next records.
    let mut answer = Vec::new();
    client.take_pending(&mut answer).expect("pending");
    client.seal(b"client side", &mut answer).expect("seal");
    let mut plain_seal = Vec::new();
    legs()
        .0
        .seal(b"client side", &mut plain_seal)
        .expect("seal");
    assert!(
        answer.len() > plain_seal.len(),
        "the key update answer goes out with the next write ({} vs {} bytes)",
        answer.len(),
        plain_seal.len()
    );
    let mut got = Vec::new();
    server.recv(&answer, &mut got).expect("server recv");
    assert_eq!(got, b"client side");
    // And the server's next records, under its new keys, still read.
    let mut more = Vec::new();
    server.seal(b"again", &mut more).expect("seal");
    let mut plain = Vec::new();
    client.recv(&more, &mut plain).expect("recv");
    assert_eq!(plain, b"again");
}

#[test]
fn a_corrupted_record_is_an_error_not_plaintext() {
    let (mut client, mut server) = legs();
    let mut wire = Vec::new();
    server.seal(&pattern(300, 9), &mut wire).expect("seal");
    let mid = wire.len() / 2;
    wire[mid] ^= 0x40;
    let mut plain = Vec::new();
    let r = client.recv(&wire, &mut plain);
    assert!(matches!(r, Err(TlsLegError::Tls(_))), "{r:?}");
    assert!(plain.is_empty());
    // Garbage that is not even a record header.
    let (mut fresh, _) = legs();
    assert!(fresh.recv(&[0xff; 64], &mut Vec::new()).is_err());
}

#[test]
fn plaintext_rustls_held_at_the_handover_comes_out_first() {
    let (mut c, mut s) = pair();
    // The handshake's reader left a record decrypted in rustls, and read another record's
    // ciphertext that rustls had not taken yet (the handoff).
    let mut wire = Vec::new();
    s.writer().write_all(b"held ").expect("writer");
    while s.wants_write() {
        s.write_tls(&mut wire).expect("write_tls");
    }
    let mut rd = &wire[..];
    c.read_tls(&mut rd).expect("read_tls");
    c.process_new_packets().expect("process");
    let mut later = Vec::new();
    s.writer().write_all(b"handed over").expect("writer");
    while s.wants_write() {
        s.write_tls(&mut later).expect("write_tls");
    }
    let mut client = LegTls::new(c, later);
    let handoff = client.take_handoff();
    assert!(
        client.take_handoff().is_empty(),
        "the handoff is taken once"
    );
    let mut plain = Vec::new();
    client.recv(&handoff, &mut plain).expect("recv");
    assert_eq!(plain, b"held handed over");
}
