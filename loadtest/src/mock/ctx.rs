//! What the lanes and the responses of one mock connection share: the writer's queue, the
//! response ids it has made, and the responses streaming now with the steers they took.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, Semaphore};

use super::writer::{Framing, Out};
use super::{lock, Shared};

/// Responses in flight per connection before further creates wait.
pub(crate) const MAX_IN_FLIGHT: usize = 16;

/// Per-connection state the lanes share.
pub(crate) struct ConnCtx {
    pub shared: Arc<Shared>,
    pub tx: mpsc::Sender<Out>,
    pub framing: Framing,
    /// Every response id this connection made (`previous_response_id` must be one).
    pub known: Mutex<HashSet<String>>,
    /// Responses streaming now, by id.
    pub running: Mutex<HashMap<String, Running>>,
    pub inflight: Arc<Semaphore>,
}

impl ConnCtx {
    pub fn new(shared: Arc<Shared>, tx: mpsc::Sender<Out>, framing: Framing) -> Arc<ConnCtx> {
        Arc::new(ConnCtx {
            shared,
            tx,
            framing,
            known: Mutex::default(),
            running: Mutex::default(),
            inflight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        })
    }

    pub async fn send(&self, text: String) -> Result<(), Closed> {
        let out = Out::Event {
            text,
            framing: self.framing,
        };
        self.tx.send(out).await.map_err(|_| Closed)
    }
}

/// A response streaming now: its lane, and the steers it took.
pub(crate) type Running = (Option<String>, Arc<Steers>);

/// The steers a running response took: a flag the streaming loop reads per delta without a
/// lock, and the submissions' ids (read once, when the response ends).
#[derive(Debug, Default)]
pub(crate) struct Steers {
    taken: AtomicBool,
    ids: Mutex<Vec<String>>,
}

impl Steers {
    /// Submission `id` steers this response.
    pub fn take(&self, id: String) {
        lock(&self.ids).push(id);
        self.taken.store(true, Ordering::Relaxed);
    }

    /// Whether any steer was taken.
    pub fn taken(&self) -> bool {
        self.taken.load(Ordering::Relaxed)
    }

    /// The submissions taken, in the order they came.
    pub fn ids(&self) -> Vec<String> {
        lock(&self.ids).clone()
    }
}

/// The connection's writer is gone; stop producing.
#[derive(Debug)]
pub(crate) struct Closed;
