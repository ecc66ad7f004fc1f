import CStrataAllocCounter
import Foundation
import Testing
@testable import Strata
import StrataMemory
import StrataModels
import StrataTensor

/// The forward pass and the step around it allocate nothing per token (DESIGN.md): counted by
/// `CStrataAllocCounter`, which sees every malloc of the calling thread.
@Suite struct AllocationTests {
    @Test(.enabled(if: strata_alloc_counter_available() == 1, "a sanitizer intercepts malloc"))
    func theCounterSeesSwiftAllocations() {
        strata_alloc_count_begin()
        let a = [Int](repeating: 7, count: 1000 + Int.random(in: 0..<2))
        let n = strata_alloc_count_end()
        #expect(a.count >= 1000)
        #expect(n >= 1)  // if interposing failed, the decode test below could not fail: it must see this one
    }

    /// Meaningful in an optimized build only (`make test` runs this suite with `-c release` too):
    /// unoptimized generic code allocates on its own, so the debug build only runs the steps.
    /// Two threads, so the decode attention runs on the pool (`Threads.runChunks`; the closure
    /// form `parallelFor` boxes its closure once per call and is kept off the decode path).
    @Test(.enabled(if: strata_alloc_counter_available() == 1, "a sanitizer intercepts malloc"), arguments: [DType.f32, .f16])
    func decodeStepsAllocateNothing(kvType: DType) throws {
        let threads = Threads.count
        Threads.set(2)
        defer { Threads.set(threads) }
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let spec = loaded.spec
        // two sequences decoding together through the paged cache, as the batch engine steps them;
        // blocks of 4, so blocks fill (and register as cached prefixes) and new ones are taken
        // during the counted steps
        let kv = PagedKVCache(layers: spec.layers, kvDim: spec.kvDim, headDim: spec.headDim, blockSize: 4, blockCount: 32, maxContext: 64, type: kvType)
        let prompts: [[Int32]] = [[1, 5, 9, 3], [2, 8, 4]]
        let layout = BatchLayout(capacity: 8)
        var samplers = [Sampler(parameters: SamplingParameters(temperature: 0.8, topK: 20, topP: 0.9, seed: 1), vocabSize: spec.vocabSize),
                        Sampler(parameters: SamplingParameters(temperature: 0, seed: 2), vocabSize: spec.vocabSize)]
        var next = [Int32](repeating: 0, count: 2)
        for (id, p) in prompts.enumerated() {
            kv.startSequence(id, prompt: p)
            try kv.reserve(id, newTokens: p.count)
            layout.removeAll()
            layout.append(sequence: id, rows: p.count, startPosition: 0, logits: .last)
            let out = try p.withUnsafeBufferPointer { try loaded.model.forward($0, layout: layout, kv: kv) }
            next[id] = Int32(samplers[id].sample(UnsafeBufferPointer(rebasing: out[0..<spec.vocabSize])))
            p.withUnsafeBufferPointer { kv.commit(id, tokens: $0) }
        }
        func step() throws {
            layout.removeAll()
            for id in 0..<2 {
                try kv.reserve(id, newTokens: 1)
                layout.append(sequence: id, rows: 1, startPosition: kv.length(of: id), logits: .last)
            }
            let out = try next.withUnsafeBufferPointer { try loaded.model.forward($0, layout: layout, kv: kv) }
            next.withUnsafeBufferPointer { t in
                for id in 0..<2 { kv.commit(id, tokens: UnsafeBufferPointer(rebasing: t[id..<(id + 1)])) }
            }
            for id in 0..<2 {
                next[id] = Int32(samplers[id].sample(UnsafeBufferPointer(rebasing: out[(id * spec.vocabSize)..<((id + 1) * spec.vocabSize)])))
            }
        }
        for _ in 0..<4 { try step() }  // first steps size the scratch buffers
        strata_alloc_count_begin()
        for _ in 0..<40 { try step() }
        let allocations = strata_alloc_count_end()
        #if DEBUG
        _ = allocations
        #else
        #expect(allocations == 0, "40 decode steps of 2 sequences allocated \(allocations) times")
        #endif
        #expect(kv.length(of: 0) == 48 && kv.length(of: 1) == 47)
        #expect(kv.pool.cachedCount >= 22 && kv.checkInvariants().isEmpty)  // the full blocks were registered
    }
}
