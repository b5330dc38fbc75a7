//! The two sides of a session and the two directions bytes flow between them — one pair of
//! names for the relay, the tap, metering and metrics.

/// One leg of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The client (the relay is its WebSocket server).
    Client,
    /// The upstream provider (the relay is its WebSocket client; every frame sent there is
    /// masked).
    Upstream,
}

impl Side {
    /// Both sides, client first (array index order).
    pub const BOTH: [Side; 2] = [Side::Client, Side::Upstream];

    /// The other leg.
    pub const fn other(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }

    /// Array index: client 0, upstream 1.
    pub const fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Upstream => 1,
        }
    }

    /// The direction whose frames this side *sends*.
    pub const fn sends(self) -> Direction {
        match self {
            Side::Client => Direction::ClientToUpstream,
            Side::Upstream => Direction::UpstreamToClient,
        }
    }

    /// Label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

/// Which way frames travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// Client events (`response.create`, …) on their way upstream.
    ClientToUpstream,
    /// Server events (`response.created`, deltas, terminal events, `error`) on their way down.
    UpstreamToClient,
}

impl Direction {
    /// Both directions, upstream-bound first (array index order).
    pub const BOTH: [Direction; 2] = [Direction::ClientToUpstream, Direction::UpstreamToClient];

    /// The side frames of this direction are read from.
    pub const fn source(self) -> Side {
        match self {
            Direction::ClientToUpstream => Side::Client,
            Direction::UpstreamToClient => Side::Upstream,
        }
    }

    /// The side frames of this direction are written to.
    pub const fn dest(self) -> Side {
        self.source().other()
    }

    /// Array index: client → upstream 0, upstream → client 1.
    pub const fn index(self) -> usize {
        self.source().index()
    }

    /// Label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Direction::ClientToUpstream => "client_to_upstream",
            Direction::UpstreamToClient => "upstream_to_client",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_and_directions_agree() {
        for d in Direction::BOTH {
            assert_eq!(d.source().sends(), d);
            assert_ne!(d.source(), d.dest());
            assert_eq!(d.index(), d.source().index());
        }
        for s in Side::BOTH {
            assert_eq!(s.other().other(), s);
            assert_eq!(Side::BOTH[s.index()], s);
        }
    }
}
