//! `--tunnel`: the diagnostic byte tunnel on the async adapter — bytes copied both ways
//! until either side ends, no frame walking, no metering (the benchmark's ceiling).

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::Instant;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent};

use super::{Conn, Ctl, SessionInfo};
use crate::relay::control::{linger, LINGER};
use crate::relay::leg::{Leg, FINISH_TIMEOUT};
use crate::relay::lifecycle::ClosedBy;
use crate::relay::pump::BufSizer;
use crate::relay::ready::{park, Parked, ReadReady};
use crate::runtime::parts::join2;
use crate::runtime::WorkerCtx;

/// The diagnostic byte tunnel: copy bytes both ways until either side ends, no frame
/// walking, no metering (the benchmark's ceiling).
pub(super) async fn tunnel<CR, CW, UR, UW>(
    ctx: &Rc<WorkerCtx>,
    info: &SessionInfo,
    client: Conn<CR, CW>,
    upstream: Conn<UR, UW>,
) where
    CR: AsyncReadRent + ReadReady,
    CW: AsyncWriteRent,
    UR: AsyncReadRent + ReadReady,
    UW: AsyncWriteRent,
{
    let started = Instant::now();
    let sizer = BufSizer::new(ctx.shared.config.buffer_bytes);
    let client_leg = Leg::new(client.write, client.fd);
    let up_leg = Leg::new(upstream.write, upstream.fd);
    let (mut crd, mut urd) = (client.read, upstream.read);
    let stop = Cell::new(false);
    let ctl = Ctl::default();
    let bytes = [Cell::new(0u64), Cell::new(0u64)];
    let c2u = tunnel_copy(
        &mut crd,
        &up_leg,
        sizer.first(client.leftover),
        &ctl,
        &stop,
        &bytes[0],
        sizer,
    );
    let u2c = tunnel_copy(
        &mut urd,
        &client_leg,
        sizer.first(upstream.leftover),
        &ctl,
        &stop,
        &bytes[1],
        sizer,
    );
    join2(c2u, u2c).await;
    client_leg.finish(None, FINISH_TIMEOUT).await;
    up_leg.finish(None, FINISH_TIMEOUT).await;
    let _ = monoio::time::timeout(LINGER, async {
        monoio::join!(linger(&mut crd), linger(&mut urd))
    })
    .await;
    ctx.metrics.session_closed(started.elapsed());
    tracing::info!(
        session = info.id,
        tenant = %info.tenant,
        route = %info.route_name,
        upstream = %info.upstream,
        path = %info.path,
        duration_ms = started.elapsed().as_millis() as u64,
        bytes_up = bytes[0].get(),
        bytes_down = bytes[1].get(),
        closed_by = ClosedBy::TunnelEnded.as_str(),
        "session closed"
    );
}

async fn tunnel_copy<R: AsyncReadRent + ReadReady, W: AsyncWriteRent>(
    src: &mut R,
    dst: &Leg<W>,
    mut buf: Vec<u8>,
    ctl: &Ctl,
    stop: &Cell<bool>,
    bytes: &Cell<u64>,
    mut sizer: BufSizer,
) {
    let stopped = || {
        poll_fn(|cx| {
            if stop.get() {
                Poll::Ready(())
            } else {
                ctl.register(cx.waker());
                Poll::Pending
            }
        })
    };
    // The bytes of the last read and the room it had, for the sizer once they are sent.
    let mut last: Option<(usize, usize)> = None;
    loop {
        // What the handshake left over, then what each read brought.
        if !buf.is_empty() {
            match dst.forward(buf, true, Instant::now()).await {
                Some(b) => buf = b,
                None => break,
            }
            buf.clear();
            if dst.is_dead() {
                break;
            }
            if let Some((n, room)) = last.take() {
                sizer.adjust(&mut buf, n, room);
            }
        }
        if park(src, &mut buf, stopped()).await != Parked::Ready {
            break;
        }
        let cap = buf.capacity();
        let r = monoio::select! {
            r = src.read(buf.slice_mut(0..cap)) => Some(r),
            _ = stopped() => None,
        };
        let Some((res, b)) = r else { break };
        buf = b.into_inner();
        match res {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                bytes.set(bytes.get() + n as u64);
                last = Some((n, cap));
            }
        }
    }
    stop.set(true);
    ctl.wake();
}
