import Testing

@testable import SluiceBroker

@Test func moduleLinks() {}
