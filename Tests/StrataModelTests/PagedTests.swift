import StrataTestSupport
import Foundation
import Testing
@testable import Strata
@testable import StrataMemory
@testable import StrataModels
import StrataTensor

@Suite struct PagedAttentionTests {
    @Test(arguments: [(1, 1), (3, 0), (1, 37), (5, 21), (16, 16), (7, 40)])
    func pagedEqualsContiguous(rows: Int, start: Int) throws {
        // random block tables (blocks handed out in a shuffled order), lengths that do not fill the last block
        var rng = TestRNG(UInt64(rows * 100 + start))
        let layers = 2, kvh = 2, heads = 6, d = 12, kvDim = kvh * d, bs = 4
        let paged = PagedKVCache(layers: layers, kvDim: kvDim, headDim: d, blockSize: bs, blockCount: 64, maxContext: 128)
        let flat = KVCache(layers: layers, capacity: 128, kvDim: kvDim, headDim: d)
        // scramble the pool: take blocks for a decoy sequence, free every other one
        paged.startSequence(99, prompt: [])
        try paged.reserve(99, newTokens: 40)
        paged.free(99)
        paged.startSequence(7, prompt: [])
        let total = start + rows
        // fill positions 0..<start through both, then the new rows
        for (from, count) in [(0, start), (start, rows)] where count > 0 {
            try paged.reserve(7, newTokens: count)
            let layout = BatchLayout()
            layout.append(sequence: 7, rows: count, startPosition: from, logits: .last)
            let flatLayout = BatchLayout()
            flatLayout.append(sequence: 0, rows: count, startPosition: from, logits: .last)
            let kr = rng.floats(count * kvDim), vr = rng.floats(count * kvDim)
            for l in 0..<layers {
                paged.write(layer: l, layout: layout, k: kr, ldk: kvDim, v: vr, ldv: kvDim)
                flat.write(layer: l, layout: flatLayout, k: kr, ldk: kvDim, v: vr, ldv: kvDim)
            }
            let toks = [Int32](repeating: 5, count: count)
            toks.withUnsafeBufferPointer { paged.commit(7, tokens: $0) }
            if from == start {
                let q = rng.floats(count * heads * d)
                for l in 0..<layers {
                    var a = [Float](repeating: 0, count: count * heads * d), b = a
                    paged.attend(layer: l, layout: layout, q: q, ldq: heads * d, out: &a, ldo: heads * d, attention: AttentionSettings(heads: heads, kvHeads: kvh, headDim: d, scale: 0.3))
                    flat.attend(layer: l, layout: flatLayout, q: q, ldq: heads * d, out: &b, ldo: heads * d, attention: AttentionSettings(heads: heads, kvHeads: kvh, headDim: d, scale: 0.3))
                    #expect(maxAbsDiff(a, b) < 1e-5, "layer \(l)")
                }
            }
        }
        #expect(paged.length(of: 7) == total)
        #expect(paged.wastedSlots < bs)
        #expect(paged.checkInvariants().isEmpty)
    }
}

@Suite struct BatchEngineTests {
    func engine(_ name: String, blocks: Int = 256, blockSize: Int = 4) throws -> BatchEngine {
        try BatchEngine(loaded: LoadedModel(directory: Fixtures.model(name)), config: .init(blocks: blocks, blockSize: blockSize))
    }

    @Test(arguments: ["llama-gqa", "gpt2", "qwen2", "qwen3", "phi3", "gemma2", "gemma3", "qwen3-moe", "mixtral", "gpt-oss"])
    func batchOfGreedyRequestsEqualsEachAlone(name: String) throws {
        let loaded = try LoadedModel(directory: Fixtures.model(name))
        let ref = try Fixtures.reference(name)
        let prompts = [ref.greedy_prompt, ref.sequences[1], Array(ref.sequences[1].prefix(3)), [ref.sequences[0][2]]]
        var p = SamplingParameters.greedy
        p.maxTokens = 12
        p.stopAtEOS = false
        let alone = try prompts.map { try Generator(loaded).generate(promptIDs: $0, parameters: p).ids }
        let e = BatchEngine(loaded: loaded, config: .init(blocks: 64, blockSize: 4))
        let outs = try e.run(prompts.map { GenerationRequest(prompt: $0, parameters: p) })
        #expect(outs.map { $0.ids } == alone)
        // the HF greedy continuation too, for the first
        #expect(Array(ref.greedy_continuation.prefix(12)) == outs[0].ids)
        #expect(e.stats.maxRunning == 4)
        #expect(e.kv.checkInvariants().isEmpty && e.kv.pool.available == 64)
    }

    @Test func prefixCacheHitGivesSameLogitsAndSkipsPrefill() throws {
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let seq = try Fixtures.reference("llama-gqa").sequences[1].map(Int32.init)  // 19 tokens
        let kv = PagedKVCache(layers: loaded.spec.layers, kvDim: loaded.spec.kvDim, headDim: loaded.spec.headDim, blockSize: 4, blockCount: 32, maxContext: 64)
        func run(_ id: Int) throws -> (reused: Int, logits: [Float]) {
            let reused = kv.startSequence(id, prompt: seq)
            let rest = Array(seq[reused...])
            try kv.reserve(id, newTokens: rest.count)
            let layout = BatchLayout()
            layout.append(sequence: id, rows: rest.count, startPosition: reused, logits: .last)
            let out = try rest.withUnsafeBufferPointer { try loaded.model.forward($0, layout: layout, kv: kv) }
            let logits = Array(out)
            rest.withUnsafeBufferPointer { kv.commit(id, tokens: $0) }
            return (reused, logits)
        }
        let cold = try run(1)
        #expect(cold.reused == 0)
        kv.free(1)  // its full blocks stay cached (evictable)
        let warm = try run(2)
        #expect(warm.reused == 16)  // 4 full blocks of 4; the last 3 tokens are computed
        #expect(maxAbsDiff(cold.logits, warm.logits) < 1e-5)
        let full = try loaded.model.logits(seq).last!
        #expect(maxAbsDiff(warm.logits, full) < 1e-4)
        #expect(kv.checkInvariants().isEmpty)
    }

    @Test func forkWritesOnCopyAndNeverChangesItsSibling() throws {
        let kvDim = 8
        let kv = PagedKVCache(layers: 1, kvDim: kvDim, headDim: kvDim, blockSize: 4, blockCount: 16, maxContext: 64)
        kv.startSequence(1, prompt: [])
        try kv.reserve(1, newTokens: 6)
        let layout = BatchLayout()
        layout.append(sequence: 1, rows: 6, startPosition: 0, logits: .none)
        let base = (0..<(6 * kvDim)).map { Float($0) }
        kv.write(layer: 0, layout: layout, k: base, ldk: kvDim, v: base, ldv: kvDim)
        [Int32](repeating: 1, count: 6).withUnsafeBufferPointer { kv.commit(1, tokens: $0) }
        kv.fork(1, into: 2)
        #expect(kv.blockTable(of: 1) == kv.blockTable(of: 2))
        let shared = kv.blockTable(of: 1)
        #expect(shared.allSatisfy { kv.pool.refs($0) == 2 })
        // the child appends: its partly filled last block is copied first
        try kv.reserve(2, newTokens: 1)
        #expect(kv.blockTable(of: 2)[1] != shared[1] && kv.blockTable(of: 2)[0] == shared[0])
        let l2 = BatchLayout()
        l2.append(sequence: 2, rows: 1, startPosition: 6, logits: .none)
        let row = [Float](repeating: -7, count: kvDim)
        kv.write(layer: 0, layout: l2, k: row, ldk: kvDim, v: row, ldv: kvDim)
        [Int32(9)].withUnsafeBufferPointer { kv.commit(2, tokens: $0) }
        // the parent's block still holds its own rows, and nothing at position 6
        let parentBlock = kv.blockTable(of: 1)[1]
        let k0 = kv.k[0].f32 + parentBlock * 4 * kvDim
        #expect((0..<(2 * kvDim)).allSatisfy { k0[$0] == base[4 * kvDim + $0] })
        #expect(k0[2 * kvDim] != -7)
        // the child's copy holds the shared rows and its new one
        let childBlock = kv.blockTable(of: 2)[1]
        let c0 = kv.k[0].f32 + childBlock * 4 * kvDim
        #expect((0..<(2 * kvDim)).allSatisfy { c0[$0] == base[4 * kvDim + $0] } && c0[2 * kvDim] == -7)
        #expect(kv.copiesOnWrite == 1 && kv.checkInvariants().isEmpty)
        kv.free(1); kv.free(2)
        #expect(kv.pool.available == 16 && kv.checkInvariants().isEmpty)
    }

    @Test func parallelSamplesShareThePromptAndAreReproducible() throws {
        let e = try engine("llama-gqa", blocks: 64)
        let prompt = try Fixtures.reference("llama-gqa").sequences[1]
        let p = SamplingParameters(temperature: 1.0, seed: 11, maxTokens: 8, stopAtEOS: false)
        let outs = try e.run([GenerationRequest(prompt: prompt, parameters: p, n: 3)])
        #expect(outs.count == 3 && outs.map { $0.sample } == [0, 1, 2])
        #expect(Set(outs.map { $0.ids }).count > 1)  // different seeds per sample
        #expect(e.stats.copiesOnWrite >= 2)  // the 19-token prompt leaves a shared partial block
        let again = try self.engine("llama-gqa", blocks: 64).run([GenerationRequest(prompt: prompt, parameters: p, n: 3)])
        #expect(again.map { $0.ids } == outs.map { $0.ids })
        #expect(e.kv.checkInvariants().isEmpty && e.kv.pool.available == 64)
    }

    @Test func preemptionUnderATinyPoolLosesNothing() throws {
        // 12 blocks of 4 tokens for 6 requests that each need up to 5 blocks: preemption must happen
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let ref = try Fixtures.reference("llama-gqa")
        var p = SamplingParameters.greedy
        p.maxTokens = 10
        p.stopAtEOS = false
        let prompts = (0..<6).map { i in Array(ref.sequences[1].dropFirst(i)) }
        let alone = try prompts.map { try Generator(loaded).generate(promptIDs: $0, parameters: p).ids }
        let e = BatchEngine(loaded: loaded, config: .init(blocks: 12, blockSize: 4))
        let outs = try e.run(prompts.map { GenerationRequest(prompt: $0, parameters: p) })
        #expect(outs.map { $0.ids } == alone)
        #expect(e.stats.preemptions > 0)
        #expect(e.kv.checkInvariants().isEmpty && e.kv.pool.available == 12)
    }

    @Test func propertyRandomArrivalsForksPreemptionsFinishes() throws {
        // random workloads against small pools; invariants checked after every step through the
        // token callback, and every block back at the end
        let loaded = try LoadedModel(directory: Fixtures.model("llama-mha-tied"))
        let vocab = loaded.spec.vocabSize
        var preemptions = 0, copies = 0, prefixHits = 0
        defer {
            // the workloads did exercise preemption, copy-on-write and prefix hits
            #expect(preemptions > 0 && copies > 0 && prefixHits > 0, "preemptions \(preemptions) copies \(copies) prefix hits \(prefixHits)")
        }
        for seed in 0..<6 {
            var rng = TestRNG(UInt64(seed) + 100)
            let blocks = 10 + Int(rng.next() % 20)
            let e = BatchEngine(loaded: loaded, config: .init(blocks: blocks, blockSize: 4, maxBatch: 1 + Int(rng.next() % 6), prefillChunk: 3 + Int(rng.next() % 9)))
            let shared = (0..<8).map { _ in Int(rng.next() % UInt64(vocab)) }
            let requests = (0..<(3 + Int(rng.next() % 6))).map { _ -> GenerationRequest in
                let own = (0..<(1 + Int(rng.next() % 14))).map { _ in Int(rng.next() % UInt64(vocab)) }
                let prompt = (rng.next() % 2 == 0 ? shared : []) + own
                let params = SamplingParameters(temperature: 0.8, topK: 20, seed: rng.next(), maxTokens: 1 + Int(rng.next() % 12), stopAtEOS: false)
                return GenerationRequest(prompt: prompt, parameters: params, n: 1 + Int(rng.next() % 3))
            }
            nonisolated(unsafe) var violations: [String] = []
            nonisolated(unsafe) var steps = 0
            e.afterStep = { engine in violations += engine.kv.checkInvariants(); steps += 1 }
            let outs = try e.run(requests)
            #expect(steps == e.stats.steps && steps > 0)
            #expect(violations.isEmpty, "seed \(seed): \(violations.prefix(3))")
            #expect(outs.count == requests.reduce(0) { $0 + $1.n }, "seed \(seed)")
            for o in outs { #expect(o.ids.count == requests[o.index].parameters.maxTokens, "seed \(seed) request \(o.index)") }
            #expect(e.kv.pool.available == blocks && e.kv.checkInvariants().isEmpty, "seed \(seed)")
            #expect(e.stats.peakWastedSlots < max(1, e.stats.wasteSequencesAtPeak) * 4 + 4)
            preemptions += e.stats.preemptions; copies += e.stats.copiesOnWrite; prefixHits += e.stats.prefixHitTokens
        }
    }
}

@Suite struct EngineSubmitTests {
    @Test func requestsJoinARunningBatchAndCancelFreesBlocks() throws {
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let ref = try Fixtures.reference("llama-gqa")
        var p = SamplingParameters.greedy
        p.maxTokens = 12
        p.stopAtEOS = false
        let a = ref.greedy_prompt, b = ref.sequences[1]
        let aloneA = try Generator(loaded).generate(promptIDs: a, parameters: p).ids
        let aloneB = try Generator(loaded).generate(promptIDs: b, parameters: p).ids
        let engine = BatchEngine(loaded: loaded, config: .init(blocks: 64, blockSize: 4))
        var streamedA: [Int] = []
        let idA = try engine.submit(GenerationRequest(prompt: a, parameters: p)) { _, t in if t.id >= 0 { streamedA.append(t.id) } }
        for _ in 0..<4 { try engine.step() }
        #expect(engine.runningCount == 1 && streamedA.count >= 3)
        // B joins while A decodes; C is cancelled mid-way
        let idB = try engine.submit(GenerationRequest(prompt: b, parameters: p))
        var long = p
        long.maxTokens = 60
        let idC = try engine.submit(GenerationRequest(prompt: b, parameters: long))
        try engine.step()
        #expect(engine.runningCount == 3)
        for _ in 0..<3 { try engine.step() }
        engine.cancel(idC)
        #expect(engine.runningCount == 2 && engine.kv.checkInvariants().isEmpty)
        while engine.hasWork { try engine.step() }
        let done = Dictionary(uniqueKeysWithValues: engine.takeFinished().map { ($0.request, $0.outputs) })
        #expect(done[idA]?.first?.ids == aloneA && streamedA == aloneA)
        #expect(done[idB]?.first?.ids == aloneB)
        let c = try #require(done[idC]?.first)
        #expect(c.stopReason == .cancelled && c.ids.count > 0 && c.ids.count < 60)
        // every block back (cached prefixes stay evictable, none owned)
        #expect(engine.kv.pool.available == 64 && engine.kv.checkInvariants().isEmpty)
        #expect(engine.takeFinished().isEmpty && !engine.hasWork)
    }

    /// A store that fails `acquire` while `failing` is set (a disk error mid-run).
    final class FlakyStore: WeightStore, @unchecked Sendable {
        let inner: WeightStore
        var failing = false
        struct Failure: Error {}
        init(_ inner: WeightStore) { self.inner = inner }
        func contains(_ name: String) -> Bool { inner.contains(name) }
        func tensor(_ name: String, layer: Int) throws -> Tensor { try inner.tensor(name, layer: layer) }
        func acquire(layer: Int) throws { if failing { throw Failure() }; try inner.acquire(layer: layer) }
        func release(layer: Int) { inner.release(layer: layer) }
        var location: String { inner.location }
    }

    @Test func aFailedRunLeavesNothingQueued() throws {
        let folder = try ModelFolder(directory: Fixtures.model("llama-gqa"))
        let store = FlakyStore(MappedWeightStore(checkpoint: try folder.requireCheckpoint()))
        let loaded = try LoadedModel(folder: folder, model: folder.load(store: store))
        let engine = BatchEngine(loaded: loaded, config: .init(blocks: 16, blockSize: 4))
        var p = SamplingParameters.greedy
        p.maxTokens = 20
        p.stopAtEOS = false
        let requests = [GenerationRequest(prompt: [1, 5, 9, 3, 7, 8], parameters: p), GenerationRequest(prompt: [2, 4], parameters: p)]
        // the weights fail after the third token: the run throws, and its requests leave the engine
        var tokens = 0
        #expect(throws: FlakyStore.Failure.self) {
            try engine.run(requests) { _, _, _ in tokens += 1; if tokens == 3 { store.failing = true } }
        }
        #expect(!engine.hasWork && engine.kv.pool.available == 16 && engine.kv.checkInvariants().isEmpty)
        #expect(engine.takeFinished().isEmpty)
        // the engine runs the same requests again as if the failure had not happened
        store.failing = false
        let out = try engine.run(requests)
        let alone = try requests.map { try Generator(loaded).generate(promptIDs: $0.prompt, parameters: p).ids }
        #expect(out.map(\.ids) == alone && out.map(\.index) == [0, 1])
    }
}

/// The scheduler alone (no forward pass): `schedule()` returns what the step runs.
@Suite struct SchedulerTests {
    @Test func scheduleReturnsDecodeRowsFirstThenPromptChunksUnderTheRowBudget() throws {
        let loaded = try LoadedModel(directory: Fixtures.model("llama-gqa"))
        let spec = loaded.spec
        let kv = PagedKVCache(layers: spec.layers, kvDim: spec.kvDim, headDim: spec.headDim, blockSize: 4, blockCount: 16, maxContext: 64)
        let sched = Scheduler(kv: kv, swap: nil, maxBatch: 8, prefillChunk: 5, maxRows: 8)
        func seq(_ id: Int, _ n: Int) -> EngineSequence {
            let prompt = (0..<n).map { ($0 * 7 + id) % 50 + 3 }
            return EngineSequence(id: id, request: id, sample: 0, arrival: id, prompt: prompt.map(Int32.init),
                                  out: SequenceOutput(loaded: loaded, parameters: SamplingParameters(), prompt: prompt))
        }
        let a = seq(0, 12), b = seq(1, 3)
        sched.enqueue(a); sched.enqueue(b)
        // step 1: a's first chunk (5 rows, the chunk limit), then b's whole prompt (3 rows: budget 8)
        var step = try sched.schedule()
        #expect(step.sequences.map(\.id) == [0, 1] && step.layout.totalRows == 8 && !step.decodeOnly)
        #expect(step.layout.entries.map(\.rowCount) == [5, 3] && step.layout.entries.map(\.startPosition) == [0, 0])
        #expect(step.layout.entries.map(\.logits) == [.none, .last])
        #expect(Array(step.tokens) == a.tokens[0..<5] + b.tokens)
        #expect(kv.blockTable(of: 0).count == 2 && kv.blockTable(of: 1).count == 1)  // blocks reserved for the rows
        // the runner's part, done by hand: commit, b samples a token
        for (e, s) in zip(step.layout.entries, step.sequences) {
            step.tokens.withUnsafeBufferPointer { kv.commit(s.id, tokens: UnsafeBufferPointer(rebasing: $0[e.rowStart..<(e.rowStart + e.rowCount)])) }
            s.computed += e.rowCount
        }
        var row = [Float](repeating: 0, count: spec.vocabSize)
        row[42] = 100
        let next = try row.withUnsafeBufferPointer { try b.out.next($0, model: loaded.model, position: 2, contextFull: false) { [] } }
        #expect(next.token.id == 42 && next.stop == nil)
        // step 2: b's decode row first, then a's next chunk
        step = try sched.schedule()
        #expect(step.sequences.map(\.id) == [1, 0] && step.layout.entries.map(\.rowCount) == [1, 5])
        #expect(step.layout.entries.map(\.startPosition) == [3, 5] && step.tokens.first == 42)
        #expect(kv.blockTable(of: 0).count == 3 && kv.blockTable(of: 1).count == 1)  // a: 10 tokens, b: 4
    }
}
