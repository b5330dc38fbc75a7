//! Which session a completion is for: the `user_data` every data-plane operation carries
//! (the ext bit, the op, the side, the slot's generation and the slot).

use crate::flow::Side;

/// What a completion belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Recv = 0,
    Send = 1,
    Cancel = 2,
    /// epoll: a leg's readiness (the token its socket is registered under).
    Ready = 3,
}

const OP_SHIFT: u32 = 59;
const SIDE_BIT: u64 = 1 << 58;
pub(super) const GEN_MASK: u64 = (1 << 26) - 1;

/// `user_data` of a data-plane operation: the ext bit, the op, the side, the slot's
/// generation (26 bits) and the slot (32 bits).
pub(super) fn user_data(slot: u32, gen: u32, side: Side, op: Op) -> u64 {
    monoio::ext::EXT_BIT
        | ((op as u64) << OP_SHIFT)
        | if side == Side::Upstream { SIDE_BIT } else { 0 }
        | ((u64::from(gen) & GEN_MASK) << 32)
        | u64::from(slot)
}

/// The parts of a `user_data`: slot, generation, side and op (`None`: not one of ours).
pub(super) fn decode(ud: u64) -> (u32, u32, Side, Option<Op>) {
    let op = match (ud >> OP_SHIFT) & 0b1111 {
        0 => Some(Op::Recv),
        1 => Some(Op::Send),
        2 => Some(Op::Cancel),
        3 => Some(Op::Ready),
        _ => None,
    };
    let side = if ud & SIDE_BIT != 0 {
        Side::Upstream
    } else {
        Side::Client
    };
    (
        (ud & 0xffff_ffff) as u32,
        ((ud >> 32) & GEN_MASK) as u32,
        side,
        op,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips_and_is_ours() {
        for (slot, gen, side, op) in [
            (0, 0, Side::Client, Op::Recv),
            (u32::MAX, GEN_MASK as u32, Side::Upstream, Op::Send),
            (12345, 7, Side::Upstream, Op::Cancel),
            (9, 3, Side::Client, Op::Ready),
        ] {
            let ud = user_data(slot, gen, side, op);
            assert_ne!(ud & monoio::ext::EXT_BIT, 0);
            assert_eq!(decode(ud), (slot, gen, side, Some(op)));
        }
    }
}
