import ArgumentParser
import SluiceStore

// `sluice queue` and priority classes (`topic … priority N`): a bridge keeps one queue per class
// (PriorityQueues.swift). Commands act on every class, highest first, unless `--priority N` names one;
// seqs are per class, so `drop --seq` and `requeue --seq` take the class with `--priority` (default 9,
// the class of rules without one, where a store from before classes keeps its messages).

struct PriorityOption: ParsableArguments {
    @Option(help: "Only this priority class (0-9; 9 is the default class).") var priority: Int?

    func validate() throws {
        if let priority, !PriorityQueues.classes.contains(priority) {
            throw ValidationError("--priority must be 0 to 9, got \(priority)")
        }
    }

    /// The class queues to act on, highest priority first.
    func queues(_ store: Store, _ bridge: String) throws -> [(priority: Int, queue: String)] {
        let classes = try priority.map { [$0] } ?? store.priorityClasses(bridge: bridge)
        return classes.map { ($0, PriorityQueues.queueName(bridge: bridge, priority: $0)) }
    }

    /// The one queue a `--seq` refers to.
    func queue(_ bridge: String) -> String {
        PriorityQueues.queueName(bridge: bridge, priority: priority ?? PriorityQueues.defaultClass)
    }
}

/// " priority=N" when the bridge has several classes (output unchanged for a bridge with one).
func classMarker(_ priority: Int, of classes: [(priority: Int, queue: String)]) -> String {
    classes.count > 1 || priority != PriorityQueues.defaultClass ? " priority=\(priority)" : ""
}
