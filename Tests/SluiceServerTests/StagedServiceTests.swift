import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import ServiceLifecycleTestKit
import Testing

@testable import SluiceServer

/// The gateway's parts as staged services in one ServiceGroup (issue 17, item 1): started one after
/// another in the group's order, stopped in reverse, and a failure takes the group down cleanly.
@Suite struct StagedServiceTests {
    /// What the stages did, in order, plus the log lines at warning and above.
    private final class Journal: Sendable {
        let events = NIOLockedValueBox<[String]>([])
        let lines = NIOLockedValueBox<[String]>([])
        func record(_ event: String) { events.withLockedValue { $0.append(event) } }
        var logger: Logger {
            Logger(label: "test") { _ in CapturingLogHandler(lines: self.lines) }
        }
    }

    private struct CapturingLogHandler: LogHandler {
        let lines: NIOLockedValueBox<[String]>
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) {
            if event.level >= .warning { lines.withLockedValue { $0.append("\(event.level): \(event.message)") } }
        }
    }

    private struct StartFailed: Error, CustomStringConvertible {
        var description: String { "cannot listen on 127.0.0.1:1 (listener): address already in use" }
    }

    /// A stage that records its start and stop; `body` runs inside its start.
    private func stage(
        _ name: String,
        _ journal: Journal,
        body: @escaping @Sendable () async throws -> Void = {}
    ) -> ServiceStage {
        ServiceStage(name) {
            try await body()
            journal.record("start \(name)")
            return { journal.record("stop \(name)") }
        }
    }

    private func group(_ stages: [ServiceStage], _ journal: Journal) -> ServiceGroup {
        ServiceGroup(
            configuration: .init(services: StagedService.group(stages, logger: journal.logger), logger: journal.logger)
        )
    }

    /// Runs the stages' group and asks it to shut down gracefully (as SIGTERM does) once `signal` fires.
    private func runUntilShutdown(_ stages: [ServiceStage], _ journal: Journal, shutdownAfter signal: AsyncStream<Void>)
        async throws
    {
        try await testGracefulShutdown { trigger in
            async let running: Void = group(stages, journal).run()
            await signal.first { _ in true }
            trigger.triggerGracefulShutdown()
            try await running
        }
    }

    @Test func startsInTheGroupsOrderAndStopsInReverse() async throws {
        let journal = Journal()
        let (started, startedSignal) = AsyncStream.makeStream(of: Void.self)
        // The store takes a while to open: the broker and the listener must wait for it although
        // the group runs all three at once.
        let stages = [
            stage("store", journal) { try await Task.sleep(for: .milliseconds(50)) },
            stage("broker", journal),
            stage("listener", journal) { startedSignal.yield() },
        ]
        try await runUntilShutdown(stages, journal, shutdownAfter: started)
        #expect(
            journal.events.withLockedValue { $0 } == [
                "start store", "start broker", "start listener", "stop listener", "stop broker", "stop store",
            ]
        )
        #expect(journal.lines.withLockedValue { $0 }.isEmpty)
    }

    @Test func aStageThatFailsToStartStopsWhatStartedInReverseAndEndsTheGroupWithItsError() async throws {
        let journal = Journal()
        let stages = [
            stage("store", journal),
            stage("broker", journal),
            stage("listener 1883", journal) { throw StartFailed() },
            stage("systemd notifier", journal),
        ]
        await #expect(throws: StartFailed.self) { try await group(stages, journal).run() }
        // The notifier never started (no READY), the broker and the store stopped (clients told, commits drained).
        #expect(journal.events.withLockedValue { $0 } == ["start store", "start broker", "stop broker", "stop store"])
        #expect(
            journal.lines.withLockedValue { $0 } == [
                "error: listener 1883 failed to start, stopping the gateway: cannot listen on 127.0.0.1:1 (listener): address already in use"
            ]
        )
    }

    @Test func aShutdownDuringStartUpStopsTheStageStartingAndSkipsTheRest() async throws {
        let journal = Journal()
        let (starting, startingSignal) = AsyncStream.makeStream(of: Void.self)
        let stages = [
            stage("store", journal),
            // Still starting when SIGTERM comes; its start ends only once its own shutdown has begun,
            // which the group asks for after the later stages have finished.
            stage("listener", journal) {
                startingSignal.yield()
                let (shutdown, shutdownSignal) = AsyncStream.makeStream(of: Void.self)
                await withGracefulShutdownHandler {
                    await shutdown.first { _ in true }
                } onGracefulShutdown: {
                    shutdownSignal.yield()
                }
            },
            stage("systemd notifier", journal),
        ]
        try await runUntilShutdown(stages, journal, shutdownAfter: starting)
        #expect(
            journal.events.withLockedValue { $0 } == ["start store", "start listener", "stop listener", "stop store"]
        )
    }

    @Test func aStageWithdrawnBeforeItWaitsNeverGetsItsTurn() async {
        let sequence = StartupSequence()
        #expect(await sequence.waitForTurn(0))
        let cancelled = Task { await sequence.waitForTurn(2) }
        cancelled.cancel()
        #expect(await cancelled.value == false)
        sequence.ready(0)
        sequence.ready(1)
        // Cancelled stays withdrawn: a late turn does not revive it.
        #expect(await sequence.waitForTurn(2) == false)
        #expect(await sequence.waitForTurn(1))
    }
}
