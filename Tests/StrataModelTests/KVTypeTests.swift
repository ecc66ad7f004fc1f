import StrataTestSupport
import Foundation
import Testing
@testable import Strata
@testable import StrataMemory
@testable import StrataModels
import StrataTensor

/// K/V stored as f16, bf16 and q8_0 against f32 storage on the same model: the logits of every
/// position, computed by prompt chunks (the gathered, widened keys and sgemm) and by decode steps
/// (the grouped decode kernel widening tiles), through the contiguous cache and the paged pool.
/// The bounds are relative to the largest logit of the sequence (Gemma-2's logits are three times
/// the others'); docs/kernels.md gives the measured errors.
@Suite struct KVTypeTests {
    /// Logits of `ids` through a contiguous cache of `type`: the first half as one prompt chunk,
    /// the rest one decode step at a time.
    static func logits(_ m: CausalLM, _ ids: [Int], type: DType) throws -> [[Float]] {
        let cache = try m.makeCache(capacity: ids.count, type: type)
        let half = ids.count / 2, v = m.spec.vocabSize
        var rows: [[Float]] = []
        let first = ids.prefix(half).map(Int32.init)
        let l = try first.withUnsafeBufferPointer { try m.forward($0, cache: cache, allLogits: true) }
        for r in 0..<half { rows.append(Array(l[(r * v)..<((r + 1) * v)])) }
        for id in ids.dropFirst(half) {
            let one = [Int32(id)]
            rows.append(Array(try one.withUnsafeBufferPointer { try m.forward($0, cache: cache, allLogits: false) }))
        }
        return rows
    }

    /// The same through a paged pool (blocks of 4 handed out scrambled): a prompt chunk of the
    /// first half, then decode steps.
    static func pagedLogits(_ m: CausalLM, _ ids: [Int], type: DType) throws -> [[Float]] {
        let spec = m.spec, v = spec.vocabSize
        let kv = PagedKVCache(layers: spec.layers, kvDim: spec.kvDim, headDim: spec.headDim, blockSize: 4, blockCount: 64, maxContext: 128, type: type)
        kv.startSequence(9, prompt: [])
        try kv.reserve(9, newTokens: 30)
        kv.free(9)
        kv.startSequence(1, prompt: [])
        let layout = BatchLayout()
        var rows: [[Float]] = []
        var pos = 0
        for chunk in [Array(ids.prefix(ids.count / 2))] + ids.dropFirst(ids.count / 2).map({ [$0] }) {
            let toks = chunk.map(Int32.init)
            try kv.reserve(1, newTokens: toks.count)
            layout.removeAll()
            layout.append(sequence: 1, rows: toks.count, startPosition: pos, logits: .all)
            let out = try toks.withUnsafeBufferPointer { try m.forward($0, layout: layout, kv: kv) }
            for r in 0..<toks.count { rows.append(Array(out[(r * v)..<((r + 1) * v)])) }
            toks.withUnsafeBufferPointer { kv.commit(1, tokens: $0) }
            pos += toks.count
        }
        return rows
    }

    static func relativeError(_ a: [[Float]], _ exact: [[Float]]) -> Float {
        let d = zip(a, exact).map { maxAbsDiff($0, $1) }.max() ?? 0
        return d / (exact.map { $0.map(abs).max() ?? 0 }.max() ?? 1)
    }

    /// Every fixture's reference sequences: f16 KV within 1e-3 of the largest logit of f32 KV's,
    /// bf16 within 6e-3 (1e-2 over gemma3's seven layers); the paged pool gives the contiguous cache's logits for each type.
    @Test(arguments: ["llama-gqa", "llama-mha-tied", "llama3-scaled", "mistral", "gpt2", "qwen2", "qwen3", "phi3", "gemma2", "gemma3"])
    func kvTypesStayNearF32OnTheFixtures(name: String) throws {
        let loaded = try LoadedModel(directory: Fixtures.model(name))
        for ids in try Fixtures.reference(name).sequences {
            let exact = try Self.logits(loaded.model, ids, type: .f32)
            // bf16 (8 bits of mantissa) through gemma3's seven layers: 8.5e-3 measured
            for (type, bound) in [(DType.f16, Float(1e-3)), (.bf16, name == "gemma3" ? 1e-2 : 6e-3)] {
                let got = try Self.logits(loaded.model, ids, type: type)
                let e = Self.relativeError(got, exact)
                #expect(e < bound && e > 0, "\(name) \(type): relative error \(e)")
                let paged = try Self.pagedLogits(loaded.model, ids, type: type)
                let pd = Self.relativeError(paged, got)
                #expect(pd < 1e-5, "\(name) \(type): paged differs from contiguous by \(pd) of the largest logit")
            }
        }
    }

    /// q8_0 KV on a model whose heads hold whole blocks (head dim 32; random weights): within 2e-2
    /// of the largest logit, paged equal to contiguous, greedy tokens through the batch engine
    /// equal to the contiguous generator's.
    @Test func q8KVOnAModelOfWholeBlocks() throws {
        let dir = Fixtures.scratch + "/kv-q8-tiny"
        if !FileManager.default.fileExists(atPath: dir + "/config.json") {
            try Synth.write(preset: Synth.preset("tiny"), dtype: .f32, seed: 11, to: dir)
        }
        let loaded = try LoadedModel(directory: dir)
        #expect(loaded.spec.headDim == 32)
        let ids = (0..<40).map { ($0 * 7919 + 13) % loaded.spec.vocabSize }
        let exact = try Self.logits(loaded.model, ids, type: .f32)
        let got = try Self.logits(loaded.model, ids, type: .q8_0)
        let e = Self.relativeError(got, exact)
        #expect(e < 2e-2 && e > 0, "q8_0: relative error \(e)")
        let paged = try Self.pagedLogits(loaded.model, ids, type: .q8_0)
        let pd = Self.relativeError(paged, got)
        #expect(pd < 1e-5, "q8_0: paged differs from contiguous by \(pd) of the largest logit")
        var p = SamplingParameters(temperature: 0, maxTokens: 12, stopAtEOS: false)
        p.seed = 1
        let alone = try Generator(loaded, kvType: .q8_0).generate(promptIDs: Array(ids.prefix(9)), parameters: p).ids
        let engine = BatchEngine(loaded: loaded, config: .init(blocks: 32, blockSize: 4, kvType: .q8_0))
        let outs = try engine.run([GenerationRequest(prompt: Array(ids.prefix(9)), parameters: p)])
        #expect(outs[0].ids == alone)
    }

    @Test func kvTypesCountTheirBytes() throws {
        let spec = try LoadedModel(directory: Fixtures.model("llama-gqa")).spec
        let f32 = spec.kvBytesPerToken(.f32)
        #expect(f32 == 2 * spec.layers * spec.kvDim * 4)
        #expect(spec.kvBytesPerToken(.f16) * 2 == f32 && spec.kvBytesPerToken(.bf16) * 2 == f32)
        #expect(PagedKVCache.bytesPerBlock(layers: 3, kvDim: 64, blockSize: 16, type: .q8_0) == 2 * 3 * 16 * 2 * 34)
        // the placement, the ledger and the pool all count the type's bytes
        let run = try TieredRun(folder: ModelFolder(path: Fixtures.model("llama-gqa")), budget: nil,
                                workload: Workload(batch: 1, promptTokens: 8, outputTokens: 8), kvBlocks: 10, kvType: .bf16)
        defer { run.shutdown() }
        #expect(run.placement.kvType == .bf16 && run.engine.kv.type == .bf16)
        #expect(run.ledger.lines[.kv] == 10 * PagedKVCache.bytesPerBlock(layers: spec.layers, kvDim: spec.kvDim, blockSize: 16, type: .bf16))
        // a head that q8_0's blocks would straddle is refused before anything is allocated
        #expect(throws: TensorError.self) {
            _ = try TieredRun(folder: ModelFolder(path: Fixtures.model("llama-gqa")), budget: nil,
                              workload: Workload(batch: 1, promptTokens: 8, outputTokens: 8), kvType: .q8_0)
        }
        #expect(throws: TensorError.self) { _ = try LoadedModel(directory: Fixtures.model("llama-gqa")).model.makeCache(capacity: 8, type: .q8_0) }
    }
}
