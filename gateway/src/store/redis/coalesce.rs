//! Script calls of concurrent requests sent together: the calls queued while the sender was
//! busy leave in one write, as one pipeline, and their answers come back in one read.
//!
//! redis-rs's multiplexed connection pipelines only what is queued when its driver task runs,
//! and a busy runtime runs a task that was just woken right after the task that woke it: the
//! driver would run after each request's send, and each command leave in a write of its own.
//! Here a request queues its command, and one task per store, woken by the first of a batch,
//! first lets every other ready task run (and queue its command), then sends the whole queue
//! as one pipeline on a pooled connection. Each call in it is still one atomic script; only
//! the writes and reads are shared.

use super::{RedisStore, Result, StoreError};
use deadpool_redis::redis::{self, Value, aio::ConnectionLike};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use tokio::sync::{Notify, oneshot};

/// The queue of one store, shared by the requests and the sender task.
#[derive(Default)]
pub(super) struct Coalescer {
    queue: Mutex<Vec<Queued>>,
    wake: Notify,
    closed: AtomicBool,
    started: OnceLock<()>,
}

struct Queued {
    cmd: redis::Cmd,
    reply: oneshot::Sender<Result<Value>>,
}

impl Coalescer {
    /// Ends the sender task (the store is gone).
    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, Vec<Queued>> {
        // No code panics while holding it; a poisoned queue is still a valid queue.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl RedisStore {
    /// Sends `cmd` with the other commands queued meanwhile; answers its reply (a server
    /// error is an `Ok(Value::ServerError)`, for the caller to read), or the batch's failure.
    pub(super) async fn coalesced(&self, cmd: redis::Cmd) -> Result<Value> {
        let answer = self.enqueue(cmd);
        match tokio::time::timeout(self.inner.config.command_timeout, answer).await {
            Ok(Ok(out)) => out,
            Ok(Err(_)) => Err(StoreError::Unavailable(
                "redis: the batch was dropped unanswered".into(),
            )),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Queues `cmd` for the next batch and answers at once: its reply (or failure) is
    /// dropped. For writes whose loss costs nothing but what they record.
    pub(super) fn coalesced_detached(&self, cmd: redis::Cmd) {
        drop(self.enqueue(cmd));
    }

    /// Queues `cmd` for the next batch (starting the sender on first use, waking it when the
    /// queue was empty); the receiver gets its reply.
    fn enqueue(&self, cmd: redis::Cmd) -> oneshot::Receiver<Result<Value>> {
        let shared = &self.inner.coalescer;
        shared.started.get_or_init(|| {
            tokio::spawn(send_batches(
                Arc::clone(shared),
                Arc::downgrade(&self.inner),
            ));
        });
        let (reply, answer) = oneshot::channel();
        let first = {
            let mut q = shared.queue();
            q.push(Queued { cmd, reply });
            q.len() == 1
        };
        if first {
            shared.wake.notify_one();
        }
        answer
    }

    /// One batch as one pipeline on a pooled connection ([`RedisStore::with_conn`]: bounded,
    /// and a connection that fails is taken out of the pool).
    async fn send_batch(&self, batch: Vec<Queued>) {
        let n = batch.len();
        let mut pipe = redis::pipe();
        let mut replies = Vec::with_capacity(n);
        for q in batch {
            pipe.add_command(q.cmd);
            replies.push(q.reply);
        }
        let out = self
            .with_conn(|mut c| async move { c.req_packed_commands(&pipe, 0, n).await })
            .await;
        match out {
            Ok(values) if values.len() == n => {
                for (reply, v) in replies.into_iter().zip(values) {
                    let _ = reply.send(Ok(v));
                }
            }
            Ok(_) => {
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Corrupt(
                        "a pipeline answered another number of replies".into(),
                    )));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The sender task: sleeps until a request queues the first command of a batch, lets every
/// other ready task run, then sends what is queued. Each batch is sent by a task of its own,
/// so the next batch does not wait for the previous one's answer.
async fn send_batches(shared: Arc<Coalescer>, store: std::sync::Weak<super::Inner>) {
    loop {
        shared.wake.notified().await;
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        tokio::task::yield_now().await;
        let batch = std::mem::take(&mut *shared.queue());
        if batch.is_empty() {
            continue;
        }
        let Some(inner) = store.upgrade() else { return };
        let store = RedisStore { inner };
        tokio::spawn(async move { store.send_batch(batch).await });
    }
}
