import Foundation
import Testing
@testable import Strata
@testable import StrataMemory
@testable import StrataModels
import StrataTensor

/// Pipeline stages in one process (what the ranks of `mpirun` run, without MPI): a model split
/// into two stages, each loaded with only its layers (the others zero pages) and K/V for only
/// its layers, gives bit for bit the logits of the whole model, over a prompt in chunks and
/// decode steps.
@Suite struct PipelineStageTests {
    @Test(arguments: ["llama-gqa", "gpt2", "gemma2", "gemma3", "phi3", "qwen3-moe", "mixtral", "gpt-oss"])
    func twoStagesGiveTheWholeModelsLogits(name: String) throws {
        let dir = Fixtures.model(name)
        let whole = try ModelRegistry.load(directory: dir)
        let spec = whole.spec, h = spec.hiddenSize, L = spec.layers
        let inv = try WeightInventory(directory: dir)
        let cut = L / 2
        let stages = [0..<cut, cut..<L]
        var ledgers: [Ledger] = []
        let models = try stages.map { s -> CausalLM in
            let ledger = Ledger(budget: nil)
            ledgers.append(ledger)
            let store = try TieredWeightStore(locations: inv.locations, streamed: [], prefetchDepth: 0, ledger: ledger, location: dir,
                                              elsewhere: Set((0..<L).filter { !s.contains($0) }))
            return try ModelRegistry.load(directory: dir, store: store)
        }
        // each stage holds its own layers' bytes and the non-layer tensors, nothing of the other's
        for (i, s) in stages.enumerated() {
            let held = inv.locations.filter { $0.layer < 0 || s.contains($0.layer) }.reduce(0) { $0 + $1.end - $1.begin }
            #expect((ledgers[i].lines[.layerWeights] ?? 0) + (ledgers[i].lines[.otherWeights] ?? 0) == held, "\(name): stage \(i) holds other layers")
        }
        let seq = try Fixtures.reference(name).sequences[1].map(Int32.init)
        let capacity = seq.count + 8
        let full = whole.makeCache(capacity: capacity)
        let caches = stages.map { KVCache(layers: L, capacity: capacity, kvDim: spec.kvDim, headDim: spec.headDim, stored: $0) }
        // the later stage's cache has no memory for the earlier stage's layers
        #expect(caches[1].k[0].count == 0 && caches[1].k[L - 1].count > 0)
        var steps: [[Int32]] = [Array(seq.prefix(seq.count / 2)), Array(seq.suffix(from: seq.count / 2))]
        steps += [[3], [7], [11]]
        var position = 0
        for tokens in steps {
            let want = try tokens.withUnsafeBufferPointer { t in
                let l = BatchLayout(); l.append(sequence: 0, rows: t.count, startPosition: position, logits: .all)
                return Array(try whole.forward(t, layout: l, kv: full))
            }
            let got = try tokens.withUnsafeBufferPointer { t -> [Float] in
                let first = BatchLayout(); first.append(sequence: 0, rows: t.count, startPosition: position, logits: .all)
                first.stageLayers = stages[0]
                let x = Array(try models[0].forward(t, layout: first, kv: caches[0]))
                #expect(x.count == t.count * h)
                return try x.withUnsafeBufferPointer { xp in
                    let second = BatchLayout(); second.append(sequence: 0, rows: t.count, startPosition: position, logits: .all)
                    second.stageLayers = stages[1]
                    second.stageInput = xp.baseAddress
                    // a later stage never reads the token ids
                    let zeros = [Int32](repeating: 0, count: t.count)
                    return try zeros.withUnsafeBufferPointer { Array(try models[1].forward($0, layout: second, kv: caches[1])) }
                }
            }
            #expect(got.count == want.count && got == want, "\(name): stages differ from the whole model at position \(position)")
            position += tokens.count
        }
    }

    /// The split of layers over ranks: contiguous, every layer once, each rank at least one, and
    /// each cut within one layer of the rank's share of the bytes.
    @Test func splitLayersFollowsTheShares() {
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<500 {
            let n = Int.random(in: 1...40, using: &rng)
            let k = Int.random(in: 1...min(n, 5), using: &rng)
            let bytes = (0..<n).map { _ in Int.random(in: 1...1000, using: &rng) }
            let weights = (0..<k).map { _ in Double.random(in: 0.1...4, using: &rng) }
            let s = splitLayers(bytes, weights: weights)
            #expect(s.count == k && s.first?.lowerBound == 0 && s.last?.upperBound == n)
            #expect(zip(s, s.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound } && s.allSatisfy { !$0.isEmpty })
            let total = Double(bytes.reduce(0, +)), sum = weights.reduce(0, +), biggest = Double(bytes.max()!)
            var target = 0.0
            for i in 0..<(k - 1) {
                target += total * weights[i] / sum
                let cum = Double(bytes[0..<s[i].upperBound].reduce(0, +))
                // a cut is off its target by at most a layer, unless the later ranks' one layer each forced it
                let forced = s[i].upperBound == n - (k - 1 - i) || s[i].upperBound == s[i].lowerBound + 1
                #expect(abs(cum - target) <= biggest || forced, "cut \(i) at \(cum) for \(target) (\(bytes), \(weights))")
            }
        }
    }
}
