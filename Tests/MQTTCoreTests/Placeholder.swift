import Testing
@testable import MQTTCore

@Test func moduleLinks() {}
