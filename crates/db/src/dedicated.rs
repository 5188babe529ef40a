//! Running a stage on a thread and runtime of its own.
//!
//! The fan-out holds the stream's progress row, which every replica's
//! fan-out waits for, while its round runs, and goes on only when the
//! reply to its last statement has been read. On the shared runtime both
//! the reading of that reply and the round's next step waited behind every
//! request the delivery loop had running; on a thread of its own the
//! operating system schedules it beside them. A stage run so takes a pool
//! of its own (`connect_pool`), whose connections are made, and their
//! replies read, on its runtime.

use std::future::Future;

/// Runs `task` on a new thread named `outboxd-<name>`, with a current-thread
/// runtime, until it ends; a panic in it is raised here. When no thread or
/// runtime can be made, it runs on the caller's runtime instead.
pub async fn run<F>(name: &str, task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::warn!(error = %e, stage = name, "could not start a runtime of its own; running it on the shared one");
            return task.await;
        }
    };
    // The task goes to the thread once it runs, so that a thread that
    // could not be made leaves it here to run on the caller's runtime.
    let (give, take) = std::sync::mpsc::sync_channel::<F>(1);
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("outboxd-{name}"))
        .spawn(move || {
            let Ok(task) = take.recv() else { return };
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| runtime.block_on(task)));
            let _ = done.send(outcome);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, stage = name, "could not start a thread of its own; running it on the shared one");
        return task.await;
    }
    if let Err(std::sync::mpsc::SendError(task)) = give.send(task) {
        // The thread ended without taking it: run it here.
        return task.await;
    }
    if let Ok(Err(panic)) = finished.await {
        std::panic::resume_unwind(panic);
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_task_runs_on_a_thread_of_its_own_and_its_panic_comes_back() {
        let caller = std::thread::current().id();
        let (tx, rx) = tokio::sync::oneshot::channel();
        super::run("test", async move {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            let _ = tx.send(std::thread::current().name().map(str::to_owned));
        })
        .await;
        assert_eq!(rx.await.unwrap().as_deref(), Some("outboxd-test"));
        assert_eq!(std::thread::current().id(), caller);

        let panicked = tokio::spawn(super::run("panics", async { panic!("stage failed") })).await;
        assert!(panicked.unwrap_err().is_panic());
    }
}
