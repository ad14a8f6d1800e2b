//! The queue of requests waiting for a token: FIFO, each with a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::ids::RequestId;

/// Parked requests. Request ids grow with arrival, so ordering by id is arrival order.
#[derive(Debug, Default)]
pub(crate) struct Parked {
    by_arrival: BTreeMap<RequestId, Instant>,
    by_deadline: BTreeSet<(Instant, RequestId)>,
}

impl Parked {
    pub(crate) fn len(&self) -> usize {
        self.by_arrival.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_arrival.is_empty()
    }

    pub(crate) fn push(&mut self, id: RequestId, deadline: Instant) {
        self.by_arrival.insert(id, deadline);
        self.by_deadline.insert((deadline, id));
    }

    /// Removes a request; `false` if it was not parked.
    pub(crate) fn remove(&mut self, id: RequestId) -> bool {
        match self.by_arrival.remove(&id) {
            Some(deadline) => {
                self.by_deadline.remove(&(deadline, id));
                true
            }
            None => false,
        }
    }

    pub(crate) fn earliest_deadline(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(deadline, _)| *deadline)
    }

    /// Removes and returns the next request whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<RequestId> {
        let &(deadline, id) = self.by_deadline.first()?;
        if deadline > now {
            return None;
        }
        self.by_deadline.pop_first();
        self.by_arrival.remove(&id);
        Some(id)
    }

    /// Removes every request, in arrival order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = RequestId> + use<> {
        self.by_deadline.clear();
        std::mem::take(&mut self.by_arrival).into_keys()
    }
}
