import Foundation
import MQTTCore
import NIOCore
import NIOPosix

/// Bridge scenarios ("bridge"). Without `--bridge` the list holds a placeholder that reports
/// "not yet measured".
func bridgeScenarios(quick: Bool, enabled: Bool) -> [Scenario] {
    guard enabled else { return [] }
    return []
}
