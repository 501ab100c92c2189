//! Pipelined sets: many sets sent to a server before the first answer is read, each still
//! given its own answer.
//!
//! libmemcached 1.1 offers no call for this, and its documented ways lose answers (ASCII's
//! reader keeps only the last reply owed; binary quiet commands' errors are thrown away;
//! buffered requests are purged, answers unread, past a watermark). What it does offer, and
//! this relies on:
//!
//! - a binary handle with requests buffered queues a plain set (only a set) in the server's
//!   write buffer, counts the reply it owes (`memcached_server_response_count`) and returns
//!   `BUFFERED`; the buffer goes out when full or on `memcached_flush_buffers`. Buffering is on
//!   only while sets are sent (see `internals::set_buffering`): with it on, closing a
//!   connection waits for the server to close its end, a poll timeout for a hung one;
//! - with both I/O watermarks at their maximum its purge, which reads owed replies and drops
//!   them, never runs;
//! - `memcached_fetch_result` reads one reply of the only server that owes any: a set's
//!   answer returns the result (stored), any other answer ends the call with its code, which
//!   survives only if the result's `count` (a field of the public struct) is not 0, and an
//!   answer that is not a set's may read a second reply (a miss) or forget the rest (`END`).
//!   The count of replies owed, read before and after, says which happened: anything but one
//!   reply read is out of step, and the connection is closed.
//!
//! Replies on a connection come in the order of its requests, so the n-th reply read is the
//! n-th set's answer. One server's sets are sent and read before the next server's, so that
//! only one server owes replies at a time; each set is checked to have gone to the server it
//! was grouped with (libmemcached may place a key elsewhere than `memcached_server_by_key`
//! says: a random distribution, a server ejected or back), and the pipe is closed if not.
//! A connection that has something to read while it owes nothing (closed by the server since
//! the last group) is replaced before a group goes out, since every set sent on it would be
//! lost.

use libmemcached_sys as sys;

use super::{Handle, Rc, internals};

/// One set of a pipeline: the key (already checked), the bytes, the wire expiration and flags.
pub(crate) struct PipedSet<'a> {
    pub key: &'a [u8],
    pub data: &'a [u8],
    pub exp: libc::time_t,
    pub flags: u32,
}

impl Handle {
    /// Makes this handle, a new clone, a pipe for [`Handle::set_pipelined`]: binary protocol,
    /// no purge (requests are buffered only while sets are sent). Memcached speaks both
    /// protocols on one port unless told otherwise (`-B ascii`, which the caller rules out), and
    /// stores the same bytes and flags whichever protocol sent them.
    pub(crate) fn make_pipe(&self) -> Rc {
        for (flag, value) in [
            (sys::MEMCACHED_BEHAVIOR_BINARY_PROTOCOL, 1),
            (
                sys::MEMCACHED_BEHAVIOR_IO_MSG_WATERMARK,
                u64::from(u32::MAX),
            ),
            (
                sys::MEMCACHED_BEHAVIOR_IO_BYTES_WATERMARK,
                u64::from(u32::MAX),
            ),
        ] {
            let rc = self.set_behavior(flag, value);
            if rc != Rc::SUCCESS {
                return rc;
            }
        }
        Rc::SUCCESS
    }

    /// Sends `sets` on this pipe ([`Handle::make_pipe`]) and hands each one's own answer to
    /// `answered` with its index (`SUCCESS`, or the code of its failure: the server's refusal,
    /// or the failure that lost its answer), a server's answers as soon as it has given them all,
    /// while libmemcached's error log still holds that server's errors. The caller keeps the
    /// number of sets low enough for their answers to wait in socket buffers until the last set
    /// is sent.
    pub(crate) fn set_pipelined(&self, sets: &[PipedSet<'_>], mut answered: impl FnMut(usize, Rc)) {
        if !self.routed() {
            (0..sets.len()).for_each(|i| answered(i, Rc::UNROUTED));
            return;
        }
        // Servers ejected or back are placed now, as the sets will place them.
        // SAFETY: the handle is live.
        unsafe { sys::memcached_autoeject(self.as_ptr()) };
        let mut servers = Vec::with_capacity(sets.len());
        for (i, set) in sets.iter().enumerate() {
            let mut rc = sys::MEMCACHED_SUCCESS;
            // SAFETY: the key describes a live slice; rc is a valid local.
            let instance = unsafe {
                sys::memcached_server_by_key(
                    self.as_ptr(),
                    set.key.as_ptr().cast(),
                    set.key.len(),
                    &mut rc,
                )
            };
            if instance.is_null() {
                answered(i, failure(rc));
            }
            servers.push(instance);
        }
        let (mut group, mut answers) = (Vec::new(), Vec::new());
        for first in 0..sets.len() {
            let server = servers[first];
            if server.is_null() {
                continue;
            }
            group.clear();
            for (i, s) in servers.iter_mut().enumerate().skip(first) {
                if *s == server {
                    group.push(i);
                    *s = std::ptr::null();
                }
            }
            self.pipe_to(server, &group, sets, &mut answers);
            for (&i, &rc) in group.iter().zip(&answers) {
                answered(i, rc);
            }
        }
    }

    /// The sets `group` of `sets`, all on `server`: sent, then answered in order into
    /// `answers`.
    fn pipe_to(
        &self,
        server: *const sys::memcached_instance_st,
        group: &[usize],
        sets: &[PipedSet<'_>],
        answers: &mut Vec<Rc>,
    ) {
        let memc = self.as_ptr();
        // SAFETY: the instance belongs to this handle, which is live.
        let owed = || unsafe { sys::memcached_server_response_count(server) };
        // SAFETY: as above, and used by this thread alone.
        if unsafe { internals::socket_is_stale(server) } {
            // Closed by the server since the last group (a restart, an idle timeout): the sets
            // would all be lost with it, where a new connection answers them. Nothing is
            // buffered or owed, so closing sends nothing but a QUIT.
            self.quit();
        }
        answers.clear();
        let (mut unsent, mut misplaced) = (Rc::UNROUTED, false);
        // SAFETY: the handle is live and used by this thread alone.
        unsafe { internals::set_buffering(memc, true) };
        for &i in group {
            let set = &sets[i];
            let before = owed();
            // SAFETY: key and value describe live slices for the whole call.
            let rc = unsafe {
                sys::memcached_set_by_key(
                    memc,
                    set.key.as_ptr().cast(),
                    set.key.len(),
                    set.key.as_ptr().cast(),
                    set.key.len(),
                    set.data.as_ptr().cast(),
                    set.data.len(),
                    set.exp,
                    set.flags,
                )
            };
            if rc != sys::MEMCACHED_BUFFERED {
                // Nothing more is sent: after a reset a new connection would answer the later
                // sets first, and their answers would be taken for the earlier ones'.
                unsent = failure(rc);
                break;
            }
            if owed() != before + 1 {
                // Sent to another server: its answer would be read as another set's.
                (unsent, misplaced) = (Rc(sys::MEMCACHED_PROTOCOL_ERROR), true);
                answers.push(unsent);
                break;
            }
            answers.push(Rc::SUCCESS);
        }
        let flushed = match answers.is_empty() || misplaced {
            true => sys::MEMCACHED_SUCCESS,
            // SAFETY: the handle is live.
            false => unsafe { sys::memcached_flush_buffers(memc) },
        };
        // SAFETY: as above.
        unsafe { internals::set_buffering(memc, false) };
        if misplaced || flushed != sys::MEMCACHED_SUCCESS {
            // Sets cut off in the middle (a flush that failed) or answers owed elsewhere:
            // nothing read now could be trusted to belong to its set, and nothing more may be
            // sent (a resent buffer would complete a cut-off set with other bytes).
            self.abandon_connections();
            let lost = match misplaced {
                true => unsent,
                false => Rc(sys::MEMCACHED_WRITE_FAILURE),
            };
            answers.iter_mut().for_each(|answer| *answer = lost);
        } else {
            let mut failed: Option<Rc> = None;
            for answer in answers.iter_mut() {
                // Answers lost with the connection fail as the connection did (a timeout, a
                // reply that could not be read, authentication refused), not as the server's
                // "out of memory" for another set did.
                *answer = match (self.read_answer(server), failed) {
                    (Some(rc), _) => rc,
                    (None, Some(rc)) if rc.0 != sys::MEMCACHED_MEMORY_ALLOCATION_FAILURE => rc,
                    (None, _) => Rc(sys::MEMCACHED_CONNECTION_FAILURE),
                };
                if !answer.is_success() {
                    failed = Some(*answer);
                }
            }
        }
        answers.resize(group.len(), unsent);
    }

    /// Closes every connection of this pipe without sending anything more on any of them.
    fn abandon_connections(&self) {
        for i in 0..self.server_count() as u32 {
            // SAFETY: the instance belongs to this handle, which is live and used by this thread
            // alone.
            if !unsafe { internals::shut_socket(self.instance(i)) } {
                // Not the layout the crate knows: close the usual way.
                break;
            }
        }
        self.quit();
    }

    /// Reads the next answer `server` owes on this pipe; `None` if it owes none (the connection
    /// was closed, and the answers with it).
    fn read_answer(&self, server: *const sys::memcached_instance_st) -> Option<Rc> {
        let memc = self.as_ptr();
        // SAFETY: the instance belongs to this handle, which is live.
        let owed = || unsafe { sys::memcached_server_response_count(server) };
        let before = owed();
        if before == 0 {
            return None;
        }
        let mut rc = sys::MEMCACHED_SUCCESS;
        // SAFETY: the handle is live and used by this thread alone; its result struct was
        // initialised with it. `count` at 1 keeps a refusal's own code (see the module docs).
        let stored = unsafe {
            internals::arm_reply(memc);
            let result = &raw mut (*memc).result;
            (*result).count = 1;
            !sys::memcached_fetch_result(memc, result, &mut rc).is_null()
        };
        let after = owed();
        // SAFETY: as above.
        let value = unsafe { internals::reply_was_value(memc) };
        // SAFETY: memcached_fatal only reads the code.
        let fatal = !stored && unsafe { sys::memcached_fatal(rc) };
        let in_step = match (stored, after + 1 == before) {
            // A value answers no set.
            (true, one) => one && !value,
            // A refusal; a failure may have closed the connection, and the answers with it.
            (false, one) => !Rc(rc).is_success() && (one || (fatal && after == 0)),
        };
        if !in_step {
            // Not a set's answer (a value, a miss, a NOOP): whatever follows is out of step.
            self.value_reply.set(value);
            self.quit();
            return Some(Rc(sys::MEMCACHED_PROTOCOL_ERROR));
        }
        Some(if stored { Rc::SUCCESS } else { Rc(rc) })
    }
}

/// A set's code when it was not sent: never a success, whatever libmemcached says.
fn failure(rc: sys::memcached_return_t) -> Rc {
    match Rc(rc).is_success() {
        true => Rc(sys::MEMCACHED_FAILURE),
        false => Rc(rc),
    }
}
