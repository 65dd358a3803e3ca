import SluiceBridge
import SluiceBroker
import SluiceConfig
import SluiceStore

extension BridgeRunner {
    /// A bridge's `out` side as the broker routes it: its rules, and per rule the class queue
    /// (`topic … priority N`) and TTL (`ttl D`) its messages are queued with.
    static func outbound(rules: BridgeRules, config: BridgeConfig) -> BridgeOutbound {
        BridgeOutbound(
            rules: rules,
            classes: RuleClass.all(from: config).map {
                DurableQueueClass(
                    queue: PriorityQueues.queueName(bridge: config.name, priority: $0.priority),
                    ttl: $0.ttl
                )
            },
            defaultQueue: DurableQueueClass(
                queue: PriorityQueues.queueName(bridge: config.name, priority: PriorityQueues.defaultClass),
                ttl: nil
            )
        )
    }
}
