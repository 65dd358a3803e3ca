import Logging
import NIOConcurrencyHelpers
import ServiceLifecycle
import SluiceStore

/// One part of the gateway as a `Service`: it starts in its turn, stays up until the group shuts it
/// down, then stops. `start` returns the part's stop, so what a part opened is what it closes.
///
/// A `ServiceGroup` runs its services concurrently and shuts them down one by one in reverse order.
/// The start-up order comes from `StartupSequence`: each stage waits until every stage before it in
/// the group is ready, so the group's list is the one place that says which part depends on which.
public struct StagedService: Service, CustomStringConvertible {
    /// Undoes what `start` did (closes, flushes); runs once, when the group shuts this stage down.
    public typealias Stop = @Sendable () async -> Void

    public let description: String
    private let position: Int
    private let sequence: StartupSequence
    private let logger: Logger
    private let start: @Sendable () async throws -> Stop

    init(_ stage: ServiceStage, position: Int, sequence: StartupSequence, logger: Logger) {
        self.description = stage.name
        self.position = position
        self.sequence = sequence
        self.logger = logger
        self.start = stage.start
    }

    /// The stages in dependency order, each as a group member whose failure shuts the group down
    /// gracefully (in reverse, so what already started stops cleanly) and ends the group with its error.
    public static func group(_ stages: [ServiceStage], logger: Logger) -> [ServiceGroupConfiguration
        .ServiceConfiguration]
    {
        let sequence = StartupSequence()
        return stages.enumerated().map { position, stage in
            ServiceGroupConfiguration.ServiceConfiguration(
                service: StagedService(stage, position: position, sequence: sequence, logger: logger),
                failureTerminationBehavior: .gracefullyShutdownGroup
            )
        }
    }

    public func run() async throws {
        // Shut down before its turn (an earlier stage failed, or SIGTERM during start-up): nothing to undo.
        guard await sequence.waitForTurn(position) else { return }
        let stop: Stop
        do {
            stop = try await start()
        } catch {
            logger.error("\(description) failed to start, stopping the gateway: \(NetworkErrorText.describe(error))")
            throw error
        }
        sequence.ready(position)
        try? await gracefulShutdown()  // also returns when the group is cancelled: stop all the same
        await stop()
    }
}

/// A part of the gateway before it takes its place in the group: its name (for the log) and how it
/// starts; `start` returns how it stops.
public struct ServiceStage: Sendable {
    public let name: String
    let start: @Sendable () async throws -> StagedService.Stop

    public init(_ name: String, start: @escaping @Sendable () async throws -> StagedService.Stop) {
        self.name = name
        self.start = start
    }
}

/// Lets stage N start once stages 0..<N are ready. A waiting stage is released (without its turn)
/// when its own graceful shutdown or a cancellation comes first.
final class StartupSequence: Sendable {
    private struct State {
        /// Stages 0..<readyCount have started.
        var readyCount = 0
        var waiting: [Int: CheckedContinuation<Bool, Never>] = [:]
        /// Stages told to give up their turn (possibly before they began to wait).
        var withdrawn: Set<Int> = []
    }

    private let state = NIOLockedValueBox(State())

    /// True when it is `position`'s turn; false if the stage was shut down or cancelled first.
    func waitForTurn(_ position: Int) async -> Bool {
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await withCheckedContinuation { continuation in
                    state.withLockedValue { state in
                        if state.withdrawn.contains(position) {
                            continuation.resume(returning: false)
                        } else if state.readyCount >= position {
                            continuation.resume(returning: true)
                        } else {
                            state.waiting[position] = continuation
                        }
                    }
                }
            } onGracefulShutdown: {
                self.withdraw(position)
            }
        } onCancel: {
            self.withdraw(position)
        }
    }

    /// `position` has started: the next stage may begin.
    func ready(_ position: Int) {
        let next = state.withLockedValue { state -> CheckedContinuation<Bool, Never>? in
            state.readyCount = max(state.readyCount, position + 1)
            return state.waiting.removeValue(forKey: position + 1)
        }
        next?.resume(returning: true)
    }

    private func withdraw(_ position: Int) {
        let waiter = state.withLockedValue { state -> CheckedContinuation<Bool, Never>? in
            state.withdrawn.insert(position)
            return state.waiting.removeValue(forKey: position)
        }
        waiter?.resume(returning: false)
    }
}

/// What the store stage opened, for the stages after it: they start once it is ready, so they read
/// it at their start (nil store: neither bridges nor persistence).
final class OpenedStore: Sendable {
    private let parts = NIOLockedValueBox<(store: Store?, bridges: [BridgeRunner])>((nil, []))

    var store: Store? { parts.withLockedValue { $0.store } }
    var bridges: [BridgeRunner] { parts.withLockedValue { $0.bridges } }

    func set(store: Store, bridges: [BridgeRunner]) {
        parts.withLockedValue { $0 = (store, bridges) }
    }
}
