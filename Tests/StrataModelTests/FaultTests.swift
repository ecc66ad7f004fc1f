import Foundation
import Testing
@testable import Strata
import StrataMemory
import StrataTensor

/// The KV swap file is Strata's alone (issue 16): created exclusively, locked, removed.
@Suite struct SwapFileTests {
    func path() -> String { Fixtures.scratch + "/swap-\(UUID().uuidString).kv" }

    @Test func anExistingFileIsNeverOverwritten() throws {
        let p = path()
        try Data("precious".utf8).write(to: URL(fileURLWithPath: p))
        defer { try? FileManager.default.removeItem(atPath: p) }
        #expect(throws: SwapError.exists(path: p)) { try SwapSpace(path: p, bytes: 1 << 20, slotBytes: 4096) }
        #expect(try Data(contentsOf: URL(fileURLWithPath: p)) == Data("precious".utf8))
    }

    @Test func aSecondRunIsRefusedAndTheFileGoesWithTheFirst() throws {
        let p = path()
        let first = try SwapSpace(path: p, bytes: 1 << 20, slotBytes: 4096)
        #expect(first.slotCount == 256 && FileManager.default.fileExists(atPath: p))
        #expect(throws: SwapError.inUse(path: p)) { try SwapSpace(path: p, bytes: 1 << 20, slotBytes: 4096) }
        first.close()
        #expect(!FileManager.default.fileExists(atPath: p))
    }

    @Test func aStaleSwapFileOfAKilledRunIsReused() throws {
        let p = path()
        var header = Array("STRATA-KV-SWAP\n".utf8)
        header += [UInt8](repeating: 0, count: 100)
        try Data(header).write(to: URL(fileURLWithPath: p))
        do {
            let s = try SwapSpace(path: p, bytes: 1 << 16, slotBytes: 4096)
            #expect(s.slotCount == 16)
        }
        #expect(!FileManager.default.fileExists(atPath: p))   // removed when released
    }

    @Test func tooSmallAndFailedStartsLeaveNothing() throws {
        let p = path()
        #expect(throws: SwapError.tooSmall(path: p, bytes: 10, slotBytes: 4096)) { try SwapSpace(path: p, bytes: 10, slotBytes: 4096) }
        #expect(!FileManager.default.fileExists(atPath: p))
    }
}

/// Ctrl-C: the loops stop between steps and their requests end as cancelled with what they made.
@Suite struct InterruptTests {
    @Test func aBatchRunStopsWithEveryRequestAccountedFor() throws {
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let engine = BatchEngine(loaded: loaded, config: .init(blocks: 64))
        let p = SamplingParameters(temperature: 0, maxTokens: 50, stopAtEOS: false)
        var seen = 0
        engine.shouldStop = { seen >= 10 }   // what Ctrl-C sets (Interrupt.requested), for this engine only
        let outs = try engine.run((0..<4).map { GenerationRequest(prompt: [1, 2 + $0], parameters: p) }) { _, _, _ in
            seen += 1
        }
        #expect(outs.count == 4 && outs.allSatisfy { $0.stopReason == .cancelled && $0.ids.count < 50 })
        #expect(!engine.hasWork && engine.kv.pool.available == 64)
    }
}
