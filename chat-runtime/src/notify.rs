//! Waking a connection's paused reader, on any executor.

use std::future::poll_fn;
use std::sync::Mutex;
use std::task::{Poll, Waker};

/// A wake-up flag for one waiting task: [`Notify::notify`] before
/// [`Notify::wait`] is not lost, and several notifies before a wait count
/// once. It only uses [`std::task::Waker`], so the same type serves tokio,
/// async-std and the blocking driver (whose waker unparks a thread).
#[derive(Debug, Default)]
pub(crate) struct Notify {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    notified: bool,
    waiter: Option<Waker>,
}

impl Notify {
    /// Sets the flag and returns the waker to call, if a task waits. The
    /// caller wakes it once it has released its own locks, so that the wake
    /// (possibly a syscall) is not done inside them.
    pub(crate) fn notify(&self) -> Option<Waker> {
        let mut state = crate::lock(&self.state);
        state.notified = true;
        state.waiter.take()
    }

    /// Completes once the flag is set, and clears it.
    pub(crate) async fn wait(&self) {
        poll_fn(|cx| {
            let mut state = crate::lock(&self.state);
            if std::mem::take(&mut state.notified) {
                return Poll::Ready(());
            }
            match &mut state.waiter {
                Some(waiter) if waiter.will_wake(cx.waker()) => {}
                waiter => *waiter = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::pin::pin;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake};

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_notify_is_kept_until_waited_for() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let notify = Notify::default();

        assert!(notify.notify().is_none());
        assert!(notify.notify().is_none());
        assert!(pin!(notify.wait()).poll(&mut cx).is_ready());

        let mut waiting = pin!(notify.wait());
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        notify.notify().unwrap().wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        assert!(waiting.as_mut().poll(&mut cx).is_ready());
    }
}
