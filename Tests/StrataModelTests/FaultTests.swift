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

/// Random workloads on a small KV pool with the disk tier on: requests arrive while others
/// run, outgrow the pool, are preempted and swapped out and back; every one must finish with
/// exactly the tokens it gets alone (issue 16's scheduler bug made such runs fail with "KV
/// block pool exhausted" after a swap-in).
@Suite struct SwapWorkloadTests {
    @Test(arguments: [1, 2, 3, 4, 5])
    func everyRequestGetsItsSoloTokens(seed: Int) throws {
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        var rng = Xoshiro256(seed: UInt64(seed))
        func rand(_ r: ClosedRange<Int>) -> Int { r.lowerBound + Int(rng.next() % UInt64(r.count)) }
        let count = rand(6...10)
        var requests: [(arrival: Int, request: GenerationRequest)] = []
        for _ in 0..<count {
            let prompt = (0..<rand(2...20)).map { _ in rand(3...600) }
            let p = SamplingParameters(temperature: 0, maxTokens: rand(5...90), stopAtEOS: false)
            requests.append((rand(0...40), GenerationRequest(prompt: prompt, parameters: p)))
        }
        let spec = loaded.spec
        let blockSize = 4
        let path = Fixtures.scratch + "/swap-workload-\(UUID().uuidString).kv"
        let swap = try SwapSpace(path: path, bytes: 400 * PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: blockSize, type: .kvDefault),
                                 slotBytes: PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: blockSize, type: .kvDefault))
        defer { swap.close() }
        let engine = BatchEngine(loaded: loaded, config: .init(blocks: 36, blockSize: blockSize, maxBatch: 4), swap: swap)
        var ids: [Int: Int] = [:]   // engine id -> request index
        var outputs: [Int: RequestOutput] = [:]
        var step = 0
        while outputs.count < count {
            for (i, r) in requests.enumerated() where r.arrival == step { ids[try engine.submit(r.request)] = i }
            if engine.hasWork { try engine.step() }
            for (id, outs) in engine.takeFinished() { outputs[ids[id]!] = outs[0] }
            step += 1
            #expect(step < 100_000)
            if step >= 100_000 { return }
        }
        for (i, r) in requests.enumerated() {
            let solo = try Generator(loaded).generate(promptIDs: r.request.prompt, parameters: r.request.parameters)
            #expect(outputs[i]?.ids == solo.ids, "seed \(seed) request \(i)")
            #expect(outputs[i]?.stopReason == .maxTokens)
        }
        #expect(engine.stats.preemptions > 0, "the workload must preempt (seed \(seed))")
        #expect(engine.stats.blocksSwappedOut > 0 && engine.stats.blocksSwappedIn > 0, "and swap (seed \(seed))")
        #expect(engine.kv.pool.available == 36 && swap.freeCount == swap.slotCount)
    }

    /// The reproduced case, scaled to the fixture: two requests that cannot both fit; the second
    /// is swapped out, the first finishes, the second comes back with nothing else running.
    @Test func aSwappedSequenceResumesWhenTheOthersAreDone() throws {
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let spec = loaded.spec
        let per = PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: 4, type: .kvDefault)
        let swap = try SwapSpace(path: Fixtures.scratch + "/swap-two-\(UUID().uuidString).kv", bytes: 64 * per, slotBytes: per)
        defer { swap.close() }
        let engine = BatchEngine(loaded: loaded, config: .init(blocks: 12, blockSize: 4, maxBatch: 32), swap: swap)
        let p = SamplingParameters(temperature: 0, maxTokens: 40, stopAtEOS: false)
        let reqs = [GenerationRequest(prompt: [1, 2, 3], parameters: p), GenerationRequest(prompt: [4, 5, 6], parameters: p)]
        let outs = try engine.run(reqs)
        #expect(engine.stats.blocksSwappedOut > 0 && engine.stats.blocksSwappedIn > 0)
        for (o, r) in zip(outs, reqs) {
            #expect(o.ids == (try Generator(loaded).generate(promptIDs: r.prompt, parameters: p)).ids)
        }
    }
}

/// NaN weights no longer run to "exit 0, token 0 forever": the logits are checked.
@Suite struct NonFiniteTests {
    /// A copy of llama-gqa whose final norm weight holds a NaN.
    /// A copy of `src` (a folder with one model.safetensors) with a NaN written over the first
    /// four bytes of `tensor`.
    static func nanModel(tensor: String = "model.norm.weight", source: String = Fixtures.model("llama-gqa")) throws -> String {
        let src = source
        let dir = Fixtures.scratch + "/nan-model-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for f in try FileManager.default.contentsOfDirectory(atPath: src) where f != "model.safetensors" {
            try FileManager.default.copyItem(atPath: src + "/" + f, toPath: dir + "/" + f)
        }
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: src + "/model.safetensors")))
        let n = Int(bytes[0..<8].enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + n)])) as! [String: Any]
        let entry = header[tensor] as! [String: Any]
        let begin = (entry["data_offsets"] as! [Int])[0]
        withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { for (i, b) in $0.enumerated() { bytes[8 + n + begin + i] = b } }
        try Data(bytes).write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        return dir
    }

    @Test func nanWeightsAreReportedNotSampled() throws {
        let dir = try Self.nanModel()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let loaded = try LoadedModel(directory: dir)
        #expect(throws: ModelError.self) { try Generator(loaded).generate(promptIDs: [1, 2, 3], parameters: .greedy) }
        do { _ = try Generator(loaded).generate(promptIDs: [1, 2, 3], parameters: .greedy) } catch let ModelError.nonFiniteLogits(position, count, place) {
            #expect(position == 2 && count > 0)
            // every layer's output finite: the NaN is in the final norm
            #expect(place == .head)
        }
        let outs = try BatchEngine(loaded: loaded, config: .init(blocks: 8)).run([GenerationRequest(prompt: [1, 2, 3], parameters: .greedy)])
        #expect(outs[0].stopReason == .error && outs[0].ids.isEmpty && (outs[0].error ?? "").contains("not finite"))
        #expect((outs[0].error ?? "").contains("final norm or output head"))
    }

    /// A NaN in one layer's weight: the error names that layer (the re-run traces each layer's
    /// output), through the generator, the batch engine and the embedding.
    @Test func theFirstNonFiniteLayerIsNamed() throws {
        let layers = try ModelFolder(path: Fixtures.model("llama-gqa")).spec.layers
        #expect(layers >= 2)
        for (tensor, want) in [("model.layers.1.mlp.down_proj.weight", NonFinitePlace.layer(1, of: layers)),
                               ("model.layers.0.self_attn.o_proj.weight", .layer(0, of: layers)),
                               ("model.embed_tokens.weight", .embedding)] {
            let dir = try Self.nanModel(tensor: tensor)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let loaded = try LoadedModel(directory: dir)
            // the NaN sits in element 0 (row 0): the embedding of token 0, and every output of
            // a projection whose row 0 meets a non-zero input
            let prompt = tensor.contains("embed") ? [0, 2, 3] : [1, 2, 3]
            do {
                _ = try Generator(loaded).generate(promptIDs: prompt, parameters: .greedy)
                Issue.record("\(tensor): a NaN weight generated without an error")
            } catch let ModelError.nonFiniteLogits(_, _, place) {
                #expect(place == want, "\(tensor)")
            }
            let outs = try BatchEngine(loaded: loaded, config: .init(blocks: 8)).run([GenerationRequest(prompt: prompt, parameters: .greedy)])
            #expect((outs[0].error ?? "").contains(want.description), "\(tensor): \(outs[0].error ?? "no error")")
        }
    }
}

/// A mapped file that shrinks under a run: the bus error names the file and the process exits
/// 74, instead of dying of a raw SIGBUS (run in a child process).
@Suite struct ShrunkFileTests {
    @Test func aTruncatedMappedFileNamesItself() async {
        let result = await #expect(processExitsWith: .exitCode(74), observing: [\.standardErrorContent]) {
            let path = NSTemporaryDirectory() + "strata-shrink-\(getpid()).bin"
            FileManager.default.createFile(atPath: path, contents: Data(repeating: 7, count: 1 << 20))
            let m = try! MappedFile(path: path)
            truncate(path, 0)
            unlink(path)
            // reading a page past the new end raises SIGBUS
            let v = m.base!.load(fromByteOffset: 512 << 10, as: UInt8.self)
            print(v)
        }
        let err = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(err.contains("strata-shrink-") && err.contains("shrank while it was mapped"))
    }
}

/// LeakSanitizer's report (issue 16): a tiered store dropped without `shutdown()` stayed alive
/// with its I/O thread; now the thread lets go and the store is freed.
@Suite struct StoreLifetimeTests {
    @Test func aDroppedStoreIsFreed() async throws {
        weak var weakStore: TieredWeightStore?
        do {
            let placement = Placement(weights: .tiered, streamedLayers: [0, 1], prefetchDepth: 1, kvBlockSize: 16, kvBlocksRAM: 8, kvBlocksDisk: 0, batchSize: 1, kvType: .f32)
            let run = try TieredRun(folder: ModelFolder(path: Fixtures.model("llama-gqa")), budget: nil,
                                    workload: Workload(batch: 1, promptTokens: 4, outputTokens: 4), placement: placement)
            let outs = try run.engine.run([GenerationRequest(prompt: [1, 2, 3], parameters: SamplingParameters(temperature: 0, maxTokens: 3))])
            #expect(outs[0].ids.count == 3)
            weakStore = run.store as? TieredWeightStore
            #expect(weakStore != nil && weakStore!.stats.layersLoaded > 0)
        }
        for _ in 0..<40 where weakStore != nil { try await Task.sleep(nanoseconds: 50_000_000) }
        #expect(weakStore == nil)
    }
}
