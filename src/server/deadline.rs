//! hyper's HTTP/1.1 header-read deadline, kept by the connection's own watchdog.
//!
//! hyper arms a timer for every request's headers: on a keep-alive connection, one per request.
//! With tokio's timer each costs a timer-wheel entry (a lock to insert it, another to remove it)
//! and about a thousand instructions, as much as the rest of the server's per-request extras
//! together. The connection's watchdog ticks anyway (it closes idle connections), so here a
//! deadline is a number the watchdog compares against its clock on each tick: arming one is an
//! atomic store and a waker's registration, with no lock and no shared structure. The price is
//! precision: a deadline is seen up to one watchdog tick late.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;

/// No deadline is armed.
const UNARMED: u64 = u64::MAX;

/// One connection's deadlines: a [`hyper::rt::Timer`] for its HTTP/1.1 side, and the clock its
/// watchdog advances with [`Deadlines::tick`].
#[derive(Clone)]
pub(super) struct Deadlines(Arc<State>);

struct State {
    /// Times below are nanoseconds after this instant.
    base: Instant,
    /// The watchdog's clock: the time of its last tick. A deadline at or before it has passed.
    ticked: AtomicU64,
    /// The deadline of the sleep that waits to be woken, or [`UNARMED`].
    armed: AtomicU64,
    waker: AtomicWaker,
}

impl Deadlines {
    pub(super) fn new() -> Self {
        Deadlines(Arc::new(State {
            base: Instant::now(),
            ticked: AtomicU64::new(0),
            armed: AtomicU64::new(UNARMED),
            waker: AtomicWaker::new(),
        }))
    }

    /// Advances the clock to now and wakes the sleep whose deadline has passed, if any. Called
    /// on each of the watchdog's ticks.
    pub(super) fn tick(&self) {
        let now = self.nanos(Instant::now());
        self.0.ticked.store(now, Ordering::SeqCst);
        if self.0.armed.load(Ordering::SeqCst) <= now {
            self.0.waker.wake();
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.0.base);
        u64::try_from(since.as_nanos()).unwrap_or(UNARMED - 1)
    }

    /// A sleep until `at` (nanoseconds after `base`).
    fn sleep_at(&self, at: u64) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(DeadlineSleep {
            state: self.0.clone(),
            at,
        })
    }
}

impl hyper::rt::Timer for Deadlines {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        match Instant::now().checked_add(duration) {
            Some(deadline) => self.sleep_until(deadline),
            // Beyond what an `Instant` can hold: a sleep that never ends.
            None => self.sleep_at(UNARMED - 1),
        }
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        self.sleep_at(self.nanos(deadline))
    }
}

/// A sleep until `at`, done once the watchdog's clock has reached it.
struct DeadlineSleep {
    state: Arc<State>,
    at: u64,
}

impl DeadlineSleep {
    fn passed(&self) -> bool {
        self.state.ticked.load(Ordering::SeqCst) >= self.at
    }
}

impl Future for DeadlineSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.passed() {
            return Poll::Ready(());
        }
        self.state.waker.register(cx.waker());
        self.state.armed.store(self.at, Ordering::SeqCst);
        // A tick between the first look and arming saw nothing armed: look again.
        if self.passed() {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for DeadlineSleep {}

impl Drop for DeadlineSleep {
    fn drop(&mut self) {
        // Disarmed only if it is still this sleep's deadline: a sleep that replaced it keeps its.
        let _ = self.state.armed.compare_exchange(
            self.at,
            UNARMED,
            Ordering::SeqCst,
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;
    use std::task::Wake;

    struct Flag(std::sync::atomic::AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    impl Flag {
        fn raised(&self) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A waker that raises a flag.
    fn flag() -> (Arc<Flag>, std::task::Waker) {
        let flag = Arc::new(Flag(Default::default()));
        (flag.clone(), std::task::Waker::from(flag))
    }

    #[test]
    fn a_sleep_ends_on_the_first_tick_after_its_deadline_and_is_woken_for_it() {
        let deadlines = Deadlines::new();
        let (flag, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let mut sleep = deadlines.sleep(Duration::from_millis(500));

        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
        deadlines.tick();
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending, "too early");
        assert!(!flag.raised(), "woken before its deadline");

        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            sleep.as_mut().poll(&mut cx),
            Poll::Pending,
            "ended with no tick after the deadline"
        );
        deadlines.tick();
        assert!(flag.raised(), "not woken by the tick");
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn a_dropped_sleep_is_not_woken_and_does_not_disarm_its_successor() {
        let deadlines = Deadlines::new();
        let (flag, waker) = flag();
        let mut cx = Context::from_waker(&waker);

        let mut first = deadlines.sleep(Duration::from_millis(1));
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Pending);
        drop(first);
        std::thread::sleep(Duration::from_millis(5));
        deadlines.tick();
        assert!(!flag.raised(), "woken for a dropped sleep");

        let mut old = deadlines.sleep(Duration::from_secs(60));
        assert_eq!(old.as_mut().poll(&mut cx), Poll::Pending);
        let mut new = deadlines.sleep(Duration::from_millis(1));
        assert_eq!(new.as_mut().poll(&mut cx), Poll::Pending);
        drop(old);
        std::thread::sleep(Duration::from_millis(5));
        deadlines.tick();
        assert!(flag.raised(), "the successor was disarmed");
        assert_eq!(new.as_mut().poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn a_sleep_past_what_an_instant_holds_never_ends() {
        let deadlines = Deadlines::new();
        let (flag, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let mut sleep = deadlines.sleep(Duration::MAX);
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
        deadlines.tick();
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
        assert!(!flag.raised(), "woken for a sleep that never ends");
    }
}
