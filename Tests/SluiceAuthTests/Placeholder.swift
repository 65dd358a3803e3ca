import Testing
@testable import SluiceAuth

@Test func moduleLinks() {}
