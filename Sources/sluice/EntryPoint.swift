import Dispatch

/// The process entry point: a synchronous main that waits for the command on the main thread.
///
/// Not an async `main`: on Linux that parks the main thread inside `pthread_exit` (libdispatch's
/// `dispatch_main`), where glibc's `setuid` no longer reaches it, so `user` would leave the process
/// leader (what `ps` shows) running as root. Blocked on a semaphore, the main thread changes ids with
/// every other thread.
@main
enum EntryPoint {
    static func main() {
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            await Sluice.main()
            done.signal()
        }
        done.wait()
    }
}
