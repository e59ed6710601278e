//! hyper's HTTP/1.1 header-read deadline, kept by the connection's own watchdog.
//!
//! hyper arms a timer for every request's headers: on a keep-alive connection, one per request.
//! With tokio's timer each costs a timer-wheel entry (a lock to insert it, another to remove it)
//! and about a thousand instructions, as much as the rest of the server's per-request extras
//! together. The connection's watchdog ticks anyway (it closes idle connections), so here a
//! deadline is a number the watchdog compares against its clock on each tick: arming one is a few
//! atomic stores and a waker's registration, with no lock and no shared structure. The price is
//! precision: a deadline is seen up to one watchdog tick late.
//!
//! hyper arms the deadline as soon as it waits for a request's head, so on its own it would close
//! a kept-alive connection that is merely quiet between requests after the headers' time, not the
//! idle timeout. Here, as in Go's server, the wait for a next request is the idle timeout's: while
//! no byte of that head has been read, the watchdog moves its deadline on with the clock, a tick
//! ahead, so the headers get at least their time from their first byte (and the tick the deadline
//! is seen on, at most one more). Bytes of a next head read together with the request before it
//! do not start its clock: such a head, if it stalls, is closed as idle. A connection's first
//! head is not waited for so: its deadline runs from the handshake (the protocol agreed there by
//! ALPN, hyper reads the head at once), and a client that connects and sends nothing is cut off.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;

use super::Activity;

/// No deadline is armed.
const UNARMED: u64 = u64::MAX;

/// The number of a connection's first sleep, the one for its first request's head.
const FIRST: u64 = 0;

/// One connection's deadlines: a [`hyper::rt::Timer`] for its HTTP/1.1 side, and the clock its
/// watchdog advances with [`Deadlines::tick`].
#[derive(Clone)]
pub(super) struct Deadlines(Arc<State>);

struct State {
    /// Times below are nanoseconds after this instant.
    base: Instant,
    /// The watchdog's clock: the time of its last tick. A deadline at or before it has passed.
    ticked: AtomicU64,
    /// The deadline of the sleep that waits to be woken, or [`UNARMED`]; moved on by the watchdog
    /// while a head that is not the first has not begun.
    armed: AtomicU64,
    /// The number of the sleep that armed `armed`.
    armed_by: AtomicU64,
    /// The connection's reads when the sleep that armed `armed` was made (as hyper began to wait
    /// for its head): more since, and the head has begun.
    reads_at_arm: AtomicU64,
    /// Sleeps made so far, which numbers them.
    made: AtomicU64,
    /// The connection's reads and writes.
    activity: Activity,
    /// How far ahead of the clock the watchdog keeps the deadline of a head that has not begun,
    /// in nanoseconds: the headers' time, and a tick.
    ahead: u64,
    waker: AtomicWaker,
}

impl Deadlines {
    /// Deadlines for a connection whose I/O counts `activity`, with `window` for each head from
    /// its first byte, advanced by a watchdog that ticks every `tick`.
    pub(super) fn new(activity: Activity, window: Duration, tick: Duration) -> Self {
        Deadlines(Arc::new(State {
            base: Instant::now(),
            ticked: AtomicU64::new(0),
            armed: AtomicU64::new(UNARMED),
            armed_by: AtomicU64::new(FIRST),
            reads_at_arm: AtomicU64::new(0),
            made: AtomicU64::new(FIRST),
            activity,
            ahead: u64::try_from(window.saturating_add(tick).as_nanos()).unwrap_or(UNARMED - 1),
            waker: AtomicWaker::new(),
        }))
    }

    /// Advances the clock to now; moves the armed deadline on if its head has not begun (and is
    /// not the first), or wakes its sleep if it has passed. Called on each of the watchdog's
    /// ticks.
    pub(super) fn tick(&self) {
        let state = &*self.0;
        let now = self.nanos(Instant::now());
        state.ticked.store(now, Ordering::SeqCst);
        let armed = state.armed.load(Ordering::SeqCst);
        if armed == UNARMED {
            return;
        }
        let waiting = state.armed_by.load(Ordering::Acquire) != FIRST
            && state.activity.reads() == state.reads_at_arm.load(Ordering::Acquire);
        if waiting {
            // Only if still the same deadline: one the connection has since disarmed or
            // replaced is left as it is.
            let moved = now.saturating_add(state.ahead).min(UNARMED - 1);
            if moved > armed {
                let _ =
                    state
                        .armed
                        .compare_exchange(armed, moved, Ordering::SeqCst, Ordering::Relaxed);
            }
        } else if armed <= now {
            state.waker.wake();
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.0.base);
        u64::try_from(since.as_nanos()).unwrap_or(UNARMED - 1)
    }

    /// A sleep until `at` (nanoseconds after `base`).
    fn sleep_at(&self, at: u64) -> Pin<Box<dyn hyper::rt::Sleep>> {
        // One writer, the connection's task, as for the activity counts.
        let number = self.0.made.load(Ordering::Relaxed);
        self.0.made.store(number + 1, Ordering::Relaxed);
        Box::pin(DeadlineSleep {
            at,
            number,
            reads: self.0.activity.reads(),
            armed: false,
            state: self.0.clone(),
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

/// A sleep until `at`, done once the watchdog's clock has reached it (or the later time the
/// watchdog moved it to). Armed when first polled: hyper makes one for every head, and drops it
/// unpolled when the head is there already.
struct DeadlineSleep {
    at: u64,
    number: u64,
    /// The connection's reads when this sleep was made.
    reads: u64,
    armed: bool,
    state: Arc<State>,
}

impl Future for DeadlineSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let state = &*this.state;
        // Registered before arming: a tick that sees the deadline armed has a waker to wake.
        state.waker.register(cx.waker());
        if !this.armed {
            this.armed = true;
            // Before the deadline, so a watchdog that sees the deadline sees these with it.
            state.reads_at_arm.store(this.reads, Ordering::Release);
            state.armed_by.store(this.number, Ordering::Release);
            state.armed.store(this.at, Ordering::SeqCst);
        }
        // A head that has not begun (and is not the first) is waited for: this count is exact
        // here, on the task that reads, where the watchdog's may lag.
        if this.number != FIRST && state.activity.reads() == this.reads {
            return Poll::Pending;
        }
        // As the watchdog may have moved it; this sleep's own if another sleep armed since (hyper
        // keeps one at a time, so that is not expected).
        let deadline = if state.armed_by.load(Ordering::Acquire) == this.number {
            state.armed.load(Ordering::SeqCst)
        } else {
            this.at
        };
        if state.ticked.load(Ordering::SeqCst) >= deadline {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl hyper::rt::Sleep for DeadlineSleep {}

impl Drop for DeadlineSleep {
    fn drop(&mut self) {
        // Disarmed only if this sleep armed it: a sleep that replaced it keeps its deadline.
        if self.armed && self.state.armed_by.load(Ordering::Acquire) == self.number {
            self.state.armed.store(UNARMED, Ordering::SeqCst);
        }
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

    /// A connection's deadlines, each head with `window` from its first byte on a watchdog that
    /// ticks every `tick`, and its I/O counts.
    fn deadlines_with(window: Duration, tick: Duration) -> (Deadlines, Activity) {
        let activity = Activity::default();
        (Deadlines::new(activity.clone(), window, tick), activity)
    }

    fn deadlines() -> (Deadlines, Activity) {
        deadlines_with(Duration::from_millis(500), Duration::from_millis(250))
    }

    /// A waker that raises a flag.
    fn flag() -> (Arc<Flag>, std::task::Waker) {
        let flag = Arc::new(Flag(Default::default()));
        (flag.clone(), std::task::Waker::from(flag))
    }

    #[test]
    fn a_sleep_ends_on_the_first_tick_after_its_deadline_and_is_woken_for_it() {
        // The connection's first head, not waited for: its time runs from now, bytes or not.
        let (deadlines, _) = deadlines();
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
        let (deadlines, activity) = deadlines();
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
        // Its head has begun: a byte of it is read.
        activity.read();
        assert_eq!(new.as_mut().poll(&mut cx), Poll::Pending);
        drop(old);
        std::thread::sleep(Duration::from_millis(5));
        deadlines.tick();
        assert!(flag.raised(), "the successor was disarmed");
        assert_eq!(new.as_mut().poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn a_sleep_past_what_an_instant_holds_never_ends() {
        let (deadlines, _) = deadlines();
        let (flag, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        let mut sleep = deadlines.sleep(Duration::MAX);
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
        deadlines.tick();
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
        assert!(!flag.raised(), "woken for a sleep that never ends");
    }

    #[test]
    fn a_later_head_is_waited_for_until_its_first_byte_then_gets_its_time() {
        // Ticks of a second, each simulated by a call to `tick`.
        let second = Duration::from_secs(1);
        let (deadlines, activity) = deadlines_with(second, second);
        let (flag, waker) = flag();
        let mut cx = Context::from_waker(&waker);
        // The connection's first head came at once.
        drop(deadlines.sleep(second));

        // The next one: nothing of it for more than its time, and it is still waited for, though
        // the connection's task is woken and polls it.
        let mut sleep = deadlines.sleep(second);
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(500));
            deadlines.tick();
            assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending);
        }
        assert!(!flag.raised(), "woken for a head that has not begun");

        // Its first byte, half a tick after the last: it has its whole second from there (the
        // deadline was kept a tick ahead), and is cut off on the first tick after.
        std::thread::sleep(Duration::from_millis(500));
        activity.read();
        deadlines.tick();
        std::thread::sleep(Duration::from_millis(700));
        deadlines.tick();
        assert!(!flag.raised(), "woken before the head had its time");
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Pending, "too early");
        std::thread::sleep(Duration::from_millis(1000));
        deadlines.tick();
        assert!(flag.raised(), "not woken once its time was up");
        assert_eq!(sleep.as_mut().poll(&mut cx), Poll::Ready(()));
    }
}
