//! What the access log learns from inside a request: the time its store operations and its
//! credit-bureau call took, and the decision it answered.
//!
//! The edge runs the inner layers and the handler inside [`noted`], which holds one
//! [`Notes`] in a task-local slot; the store timing (`App::timed`) and the bureau call add to
//! it with [`add_store`] and [`add_bureau`], the drawdown handler records its decision with
//! [`decision`]. Outside [`noted`] (a test calling a handler directly, the background tasks)
//! these do nothing. A task-local rather than an extension threaded through every call: the
//! handlers, the store and the bureau keep their signatures, and a request never leaves its
//! task (nothing on the request path is spawned).

use std::cell::Cell;
use std::time::Duration;

/// What one request's access-log line says of the work done inside it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Notes {
    /// Total time in store operations (loads and commits, each until it answered or gave up).
    pub store: Duration,
    /// Store operations made.
    pub store_ops: u16,
    /// Time in credit-bureau calls (none when the answer came from the cache or no call was
    /// made).
    pub bureau: Duration,
    /// Credit-bureau calls made.
    pub bureau_calls: u16,
    /// The decision answered (`approved`, `rejected`, `review`), if any.
    pub outcome: Option<&'static str>,
    /// The decision's principal reason code, if any.
    pub reason: Option<&'static str>,
}

tokio::task_local! {
    static NOTES: Cell<Notes>;
}

/// Runs `f` with an empty [`Notes`], and answers its output with what was noted meanwhile.
pub fn noted<F: Future>(f: F) -> impl Future<Output = (F::Output, Notes)> {
    NOTES.scope(Cell::new(Notes::default()), async move {
        let out = f.await;
        (out, NOTES.with(Cell::get))
    })
}

fn update(change: impl FnOnce(&mut Notes)) {
    // Outside `noted` there is nothing to note.
    let _ = NOTES.try_with(|cell| {
        let mut notes = cell.get();
        change(&mut notes);
        cell.set(notes);
    });
}

/// One store operation took `took`.
pub fn add_store(took: Duration) {
    update(|n| {
        n.store = n.store.saturating_add(took);
        n.store_ops = n.store_ops.saturating_add(1);
    });
}

/// One credit-bureau call took `took`.
pub fn add_bureau(took: Duration) {
    update(|n| {
        n.bureau = n.bureau.saturating_add(took);
        n.bureau_calls = n.bureau_calls.saturating_add(1);
    });
}

/// The request answers a decision: its outcome and principal reason code.
pub fn decision(outcome: &'static str, reason: Option<&'static str>) {
    update(|n| {
        n.outcome = Some(outcome);
        n.reason = reason;
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn notes_add_up_inside_and_are_ignored_outside() {
        add_store(Duration::from_millis(5));
        let ((), notes) = noted(async {
            add_store(Duration::from_millis(2));
            tokio::task::yield_now().await;
            add_store(Duration::from_millis(3));
            add_bureau(Duration::from_millis(7));
            decision("rejected", Some("SINGLE_DRAWDOWN_LIMIT"));
        })
        .await;
        assert_eq!(
            notes,
            Notes {
                store: Duration::from_millis(5),
                store_ops: 2,
                bureau: Duration::from_millis(7),
                bureau_calls: 1,
                outcome: Some("rejected"),
                reason: Some("SINGLE_DRAWDOWN_LIMIT"),
            }
        );
        // A second request starts empty.
        let ((), notes) = noted(async {}).await;
        assert_eq!(notes, Notes::default());
    }
}
