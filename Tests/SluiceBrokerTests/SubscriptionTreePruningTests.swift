import MQTTCore
import Testing

@testable import SluiceBroker

/// Subscription-tree nodes are freed when their last subscriber leaves (issue 17, item 7).
@Suite struct SubscriptionTreePruningTests {
    let subscription = Subscription(options: SubscriptionOptions(qos: .atLeastOnce))

    @Test func churningDistinctFiltersLeavesTheNodeCountWhereItStarted() {
        var tree = SubscriptionTree()
        #expect(tree.nodeCount == 1)
        for round in 0..<6 {
            for n in 0..<500 {
                tree.insert(filter: "site/\(round)/device/\(n)/+", clientID: "c\(n % 7)", subscription: subscription)
            }
            #expect(tree.nodeCount == 1 + 1 + 1 + 1 + 500 * 2)  // site, round, device, then n and + per filter
            for n in 0..<500 {
                let removed1 = tree.remove(filter: "site/\(round)/device/\(n)/+", clientID: "c\(n % 7)")
                #expect(removed1)
            }
            #expect(tree.nodeCount == 1)
            #expect(tree.nodes.count == 1)  // an empty tree gives its storage back
        }
    }

    @Test func aNodeStaysWhileAChildOrAnotherSubscriberNeedsIt() {
        var tree = SubscriptionTree()
        tree.insert(filter: "a/b", clientID: "x", subscription: subscription)
        tree.insert(filter: "a/b/c", clientID: "y", subscription: subscription)
        tree.insert(filter: "a/b", clientID: "z", subscription: subscription)
        #expect(tree.nodeCount == 4)
        let removed2 = tree.remove(filter: "a/b", clientID: "x")
        #expect(removed2)
        #expect(tree.nodeCount == 4)  // z still subscribes to a/b
        let removed3 = tree.remove(filter: "a/b", clientID: "z")
        #expect(removed3)
        #expect(tree.nodeCount == 4)  // a/b/c hangs below it
        #expect(tree.match(topic: "a/b/c").subscribers.map(\.clientID) == ["y"])
        let removed4 = tree.remove(filter: "a/b/c", clientID: "y")
        #expect(removed4)
        #expect(tree.nodeCount == 1)
        #expect(tree.match(topic: "a/b/c").subscribers.isEmpty)
    }

    @Test func freedSlotsAreReusedAndStillMatchCorrectly() {
        var tree = SubscriptionTree()
        tree.insert(filter: "keep/#", clientID: "k", subscription: subscription)
        tree.insert(filter: "gone/1", clientID: "g", subscription: subscription)
        let slots = tree.nodes.count
        let removed5 = tree.remove(filter: "gone/1", clientID: "g")
        #expect(removed5)
        #expect(tree.nodeCount == 3)
        tree.insert(filter: "new/2", clientID: "n", subscription: subscription)
        #expect(tree.nodes.count == slots)  // the two freed slots were reused
        #expect(tree.match(topic: "new/2").subscribers.map(\.clientID) == ["n"])
        #expect(tree.match(topic: "gone/1").subscribers.isEmpty)
        #expect(tree.match(topic: "keep/x").subscribers.map(\.clientID) == ["k"])
    }

    @Test func sharedGroupsFreeTheirNodesWhenTheLastMemberLeaves() {
        var tree = SubscriptionTree()
        tree.insert(filter: "$share/g/s/t", clientID: "a", subscription: subscription)
        tree.insert(filter: "$share/g/s/t", clientID: "b", subscription: subscription)
        #expect(tree.nodeCount == 3)
        let removed6 = tree.remove(filter: "$share/g/s/t", clientID: "a")
        #expect(removed6)
        #expect(tree.nodeCount == 3)
        let removed7 = tree.remove(filter: "$share/g/s/t", clientID: "b")
        #expect(removed7)
        #expect(tree.nodeCount == 1)
        #expect(tree.count == 0 && tree.sharedCount == 0)
    }

    @Test func removingAnUnknownSubscriptionChangesNothing() {
        var tree = SubscriptionTree()
        tree.insert(filter: "a/b", clientID: "x", subscription: subscription)
        let removed8 = tree.remove(filter: "a/b", clientID: "nobody")
        #expect(!removed8)
        let removed9 = tree.remove(filter: "a/c", clientID: "x")
        #expect(!removed9)
        let removed10 = tree.remove(filter: "a", clientID: "x")
        #expect(!removed10)
        #expect(tree.nodeCount == 3)
    }

    /// Pruning walks up a loop, not a recursion: 65,535 levels free without running out of stack.
    @Test func aDeepFilterIsFreedWithoutRecursion() {
        var tree = SubscriptionTree()
        let filter = String(repeating: "/", count: 65_534)
        tree.insert(filter: filter, clientID: "deep", subscription: subscription)
        #expect(tree.nodeCount == 65_536)
        let removed11 = tree.remove(filter: filter, clientID: "deep")
        #expect(removed11)
        #expect(tree.nodeCount == 1)
    }
}
