//! A shard's memory budget for requests: bytes of request frames read and not yet answered.
//!
//! A connection asks for a frame's bytes before it reserves a buffer for the body; when the
//! shard is over budget the connection waits, and so stops reading its socket (TCP then
//! pushes back on the client). The bytes come back when the response has been written.
//! One frame larger than the whole budget is still admitted when nothing else is in use, so
//! a legal maximum-size request cannot wait forever.
//!
//! Layer (ARCHITECTURE.md "Layers", kept by tests/it/layers.rs): `budget` uses `limits`.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use futures::channel::oneshot;

pub struct Budget {
    limit_bytes: usize,
    used_bytes: Cell<usize>,
    waiters: RefCell<Vec<oneshot::Sender<()>>>,
    /// Times a connection had to wait (back-pressure events).
    pub waits_total: Cell<u64>,
}

/// Bytes held until dropped.
pub struct Permit {
    budget: Rc<Budget>,
    bytes: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let b = &self.budget;
        b.used_bytes.set(b.used_bytes.get() - self.bytes);
        // Wake everyone waiting; each re-checks (few waiters, rare event).
        for w in b.waiters.borrow_mut().drain(..) {
            let _ = w.send(());
        }
    }
}

impl Budget {
    pub fn new(limit_bytes: usize) -> Rc<Budget> {
        Rc::new(Budget { limit_bytes, used_bytes: Cell::new(0), waiters: RefCell::new(Vec::new()), waits_total: Cell::new(0) })
    }

    pub fn used_bytes(&self) -> usize {
        self.used_bytes.get()
    }

    pub fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    fn try_take(self: &Rc<Self>, bytes: usize) -> Option<Permit> {
        let used = self.used_bytes.get();
        if used == 0 || used + bytes <= self.limit_bytes {
            self.used_bytes.set(used + bytes);
            return Some(Permit { budget: self.clone(), bytes });
        }
        None
    }

    /// Waits until `bytes` fit in the budget, then holds them.
    pub async fn acquire(self: &Rc<Self>, bytes: usize) -> Permit {
        let mut counted = false;
        loop {
            if let Some(p) = self.try_take(bytes) {
                return p;
            }
            if !counted {
                self.waits_total.set(self.waits_total.get() + 1);
                counted = true;
            }
            let (tx, rx) = oneshot::channel();
            self.waiters.borrow_mut().push(tx);
            let _ = rx.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[compio::test]
    async fn waits_until_released_and_admits_one_oversized() {
        let b = Budget::new(100);
        let p1 = b.acquire(60).await;
        let p2 = b.acquire(40).await;
        assert_eq!(b.used_bytes(), 100);
        let mut third = Box::pin(b.acquire(10));
        assert!((&mut third).now_or_never().is_none(), "over budget must wait");
        drop(p1);
        let p3 = third.await;
        assert_eq!(b.used_bytes(), 50);
        drop((p2, p3));
        assert_eq!(b.used_bytes(), 0);
        // Larger than the whole budget: admitted alone.
        let big = b.acquire(1000).await;
        assert_eq!(b.used_bytes(), 1000);
        drop(big);
        assert_eq!(b.waits_total.get(), 1);
    }
}
