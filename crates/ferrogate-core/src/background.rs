//! Background threads that must not take CPU from requests (the usage ledger's writer, the trace
//! exporter).

/// Puts the calling thread (and the threads it spawns afterwards, which inherit the policy) at
/// `SCHED_IDLE`: it runs only when a CPU has nothing else to do, and any woken request worker
/// preempts it at once. Best effort: on failure, or off Linux, the thread stays as it was
/// (`what` names it in the warning).
pub fn idle_priority(what: &str) {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::unix::{
            NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy, thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) = set_thread_priority_and_policy(thread_native_id(), thread_priority::ThreadPriority::Min, idle) {
            tracing::warn!(error = %e, "{what}: cannot lower the thread's priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = what;
}
