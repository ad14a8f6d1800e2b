//! The queue of requests waiting for a token: FIFO, each with a deadline.

use crate::time::Instant;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::ids::RequestId;

/// Parked requests. Request ids grow with arrival, so ordering by id is arrival order.
///
/// Deadlines live in a min-heap with lazy deletion: a cancelled request leaves its
/// heap entry behind until it reaches the top (skipped there) or the heap is rebuilt,
/// which happens once stale entries outnumber live ones, so memory stays bounded.
///
/// Generic over the time type so that its tests need no clock.
#[derive(Debug)]
pub(crate) struct Parked<T = Instant> {
    by_arrival: BTreeMap<RequestId, T>,
    deadlines: BinaryHeap<Reverse<(T, RequestId)>>,
}

impl<T> Default for Parked<T> {
    fn default() -> Self {
        Self {
            by_arrival: BTreeMap::new(),
            deadlines: BinaryHeap::new(),
        }
    }
}

impl<T: Ord + Copy> Parked<T> {
    pub(crate) fn len(&self) -> usize {
        self.by_arrival.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_arrival.is_empty()
    }

    pub(crate) fn push(&mut self, id: RequestId, deadline: T) {
        self.by_arrival.insert(id, deadline);
        self.deadlines.push(Reverse((deadline, id)));
    }

    /// Removes a request; `false` if it was not parked.
    pub(crate) fn remove(&mut self, id: RequestId) -> bool {
        if self.by_arrival.remove(&id).is_none() {
            return false;
        }
        if self.deadlines.len() > 2 * self.by_arrival.len() + 64 {
            self.deadlines = self
                .by_arrival
                .iter()
                .map(|(&id, &at)| Reverse((at, id)))
                .collect();
        }
        self.skip_stale();
        true
    }

    /// The earliest deadline of a parked request.
    pub(crate) fn earliest_deadline(&self) -> Option<T> {
        self.deadlines
            .peek()
            .map(|Reverse((deadline, _))| *deadline)
    }

    /// Removes and returns the next request whose deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: T) -> Option<RequestId> {
        let &Reverse((deadline, id)) = self.deadlines.peek()?;
        if deadline > now {
            return None;
        }
        self.deadlines.pop();
        self.by_arrival.remove(&id);
        self.skip_stale();
        Some(id)
    }

    /// Removes every request, in arrival order.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = RequestId> + use<T> {
        self.deadlines.clear();
        std::mem::take(&mut self.by_arrival).into_keys()
    }

    /// Drops heap entries of requests no longer parked, so the top is always live.
    fn skip_stale(&mut self) {
        while let Some(&Reverse((_, id))) = self.deadlines.peek() {
            if self.by_arrival.contains_key(&id) {
                break;
            }
            self.deadlines.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_survive_cancellation_and_memory_stays_bounded() {
        // Time is a plain number here: seconds since some start.
        let mut parked: Parked<u64> = Parked::default();
        for n in 0..1000u64 {
            // Deadlines in reverse arrival order: the heap must still find the earliest.
            parked.push(RequestId(n), 2000 - n);
        }
        for n in 500..1000u64 {
            assert!(parked.remove(RequestId(n)));
        }
        assert!(!parked.remove(RequestId(600)));
        assert_eq!(parked.len(), 500);
        assert!(parked.deadlines.len() <= 2 * 500 + 64);
        assert_eq!(parked.earliest_deadline(), Some(1501));
        assert_eq!(parked.pop_expired(1501), Some(RequestId(499)));
        assert_eq!(parked.pop_expired(1501), None);
        let rest: Vec<RequestId> = parked.drain().collect();
        assert_eq!(rest, (0..499).map(RequestId).collect::<Vec<_>>());
        assert!(parked.is_empty() && parked.earliest_deadline().is_none());
    }
}
