import Foundation
import Testing
@testable import Strata
@testable import StrataMemory
@testable import StrataModels
import StrataPlanner
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

/// Expert shards in one process: two copies of a mixture, each holding half of every layer's
/// experts (a stacked GGUF tensor in part, the rest unbacked), the first sending the rows routed
/// to the other half to the second (`serveExperts`), give the whole model's logits bit for bit.
@Suite struct ExpertShardTests {
    /// The two "ranks" of one process: a request runs at once on the other copy's model.
    final class Pair: ExpertShards {
        let rank: Int, ranks = 2, split: Int, n: Int
        weak var peer: ExpertServing?
        var outputs: [Float] = []
        var requests = 0
        init(rank: Int, split: Int, n: Int) { self.rank = rank; self.split = split; self.n = n }
        func experts(of rank: Int, layer: Int) -> Range<Int> { rank == 0 ? 0..<split : split..<n }
        func send(layer: Int, to rank: Int, experts: UnsafeBufferPointer<Int32>, counts: UnsafeBufferPointer<Int32>,
                  rowIDs: UnsafeBufferPointer<Int32>, xn: UnsafePointer<Float>, hidden: Int) throws {
            #expect(rank != self.rank && experts.allSatisfy { self.experts(of: rank, layer: layer).contains(Int($0)) })
            var rows = [Float]()
            for r in rowIDs { rows += UnsafeBufferPointer(start: xn + Int(r) * hidden, count: hidden) }
            outputs = [Float](repeating: .nan, count: rowIDs.count * hidden)
            try rows.withUnsafeBufferPointer { rp in
                try outputs.withUnsafeMutableBufferPointer { op in
                    try peer!.serveExperts(layer: layer, experts: experts, counts: counts, rows: rp.baseAddress!, out: op.baseAddress!)
                }
            }
            requests += 1
        }
        func receive(layer: Int, from rank: Int, into out: UnsafeMutablePointer<Float>, rows: Int, hidden: Int) throws {
            #expect(outputs.count == rows * hidden)
            out.update(from: outputs, count: rows * hidden)
        }
    }

    @Test(arguments: ["qwen3-moe", "mixtral", "gguf:qwen3moe-q4_k_m", "gguf:mixtral-q4_k_m"])
    func halfTheExpertsHereHalfThereGiveTheWholeModelsLogits(name: String) throws {
        let gguf = name.hasPrefix("gguf:")
        let short = String(name.dropFirst(gguf ? 5 : 0))
        let dir = gguf ? GGUFFixtures.path(short) : Fixtures.model(short)
        let whole = try ModelRegistry.load(directory: dir)
        let inv = try WeightInventory(directory: dir)
        let n = whole.spec.moe!.experts
        let pairs = [Pair(rank: 0, split: n / 2, n: n), Pair(rank: 1, split: n / 2, n: n)]
        var ledgers: [Ledger] = []
        let models = try pairs.map { p -> CausalLM in
            let ledger = Ledger(budget: nil)
            ledgers.append(ledger)
            let store = try TieredWeightStore(locations: inv.locations, streamed: [], prefetchDepth: 0, ledger: ledger, location: dir, shards: p)
            return try ModelRegistry.load(directory: dir, store: store)
        }
        pairs[0].peer = models[1] as? ExpertServing
        pairs[1].peer = models[0] as? ExpertServing
        // each copy holds its half of the experts' bytes, not the other's
        let expertBytes = inv.experts.map { $0.reduce(0) { $0 + $1.bytes } }.reduce(0, +)
        let all = inv.locations.reduce(0) { $0 + $1.end - $1.begin }
        for (i, l) in ledgers.enumerated() {
            let mine = inv.experts.map { layer in layer.enumerated().filter { pairs[i].experts(of: i, layer: 0).contains($0.offset) }.reduce(0) { $0 + $1.element.bytes } }.reduce(0, +)
            let held = (l.lines[.layerWeights] ?? 0) + (l.lines[.otherWeights] ?? 0)
            #expect(held == all - expertBytes + mine, "\(name): copy \(i) holds \(held) bytes, expected \(all - expertBytes + mine)")
        }
        let seq = try (gguf ? GGUFFixtures.reference(short).sequences[0] : Fixtures.reference(short).sequences[1]).map(Int32.init)
        let a = try models[0].logits(seq), b = try whole.logits(seq)
        #expect(pairs[0].requests > 0, "\(name): no rows went to the other half")
        #expect(zip(a.joined(), b.joined()).allSatisfy { $0 == $1 }, "\(name): logits differ from the whole model's")
    }
}

/// The cluster planner against the one-host planner and a hand count of the pipeline.
@Suite struct ClusterPlannerTests {
    func inventory(_ config: String) throws -> PlannerInventory {
        try PlannerInventory.build(directory: Fixtures.root + "/configs/" + config, workload: Workload(batch: 1, promptTokens: 512, outputTokens: 128),
                                   dtype: .q4_k)
    }

    @Test func oneHostIsTheOneHostPlan() throws {
        let inv = try inventory("llama-2-70b")
        let req = PlanRequest(budgetBytes: 48 << 30, batch: 1, promptTokens: 512, outputTokens: 128)
        let one = try Planner.plan(inv: inv, profile: syntheticProfile(), request: req, curve: false)
        let c = try ClusterPlanner.plan(inv: inv, hosts: [HostSpec(name: "a", ramBudgetBytes: 48 << 30, networkBytesPerSecond: 1e9, networkLatencySeconds: 1e-3)],
                                        request: req, profile: syntheticProfile(), shardExperts: true)
        #expect(c.stages.count == 1 && c.stages[0].firstLayer == 0 && c.stages[0].endLayer == 80 && c.networkSecondsPerStep == 0)
        #expect(abs(c.decodeTokensPerSecond - one.prediction.decodeTokensPerSecond) / one.prediction.decodeTokensPerSecond < 1e-9)
        #expect(c.oneHostDecodeTokensPerSecond == one.prediction.decodeTokensPerSecond)
    }

    /// Three hosts, batch 1: the step is each stage's pass plus each hop, one after another
    /// (the head only on the last), and the stages' layers follow the budgets.
    @Test func aStepIsTheStagesAndTheHopsInTurn() throws {
        let inv = try inventory("llama-2-70b")
        let hosts = [HostSpec(name: "a", ramBudgetBytes: 32 << 30, networkBytesPerSecond: 1e8, networkLatencySeconds: 1e-3),
                     HostSpec(name: "b", ramBudgetBytes: 32 << 30, networkBytesPerSecond: 1e8, networkLatencySeconds: 2e-3),
                     HostSpec(name: "c", ramBudgetBytes: 16 << 30, networkBytesPerSecond: 1e8, networkLatencySeconds: 3e-3)]
        let req = PlanRequest(budgetBytes: 32 << 30, batch: 1, promptTokens: 512, outputTokens: 128)
        let c = try ClusterPlanner.plan(inv: inv, hosts: hosts, request: req, profile: syntheticProfile(), shardExperts: true)
        #expect(c.stages.map(\.endLayer) == [32, 64, 80] && c.microBatches == 1)
        let bw = 1e8, hidden = 8192.0 * 4, logits = 32000.0 * 4
        let hops: [Double] = [1e-3 + hidden / bw, 2e-3 + hidden / bw, 3e-3 + logits / bw]
        for (s, h) in hops.enumerated() { #expect(abs(c.stages[s].hopSeconds - h) < 1e-12) }
        let want = c.stages.reduce(0) { $0 + $1.stepSeconds } + hops.reduce(0, +)
        #expect(abs(c.decodeStepSeconds - want) < 1e-9 && abs(c.networkSecondsPerStep - hops.reduce(0, +)) < 1e-12)
        // the stages' passes add up to the whole model's resident pass (the head counted once)
        var cost = CostModel(profile: syntheticProfile()); cost.dtype = inv.weightDType
        let whole = cost.pass(inv: inv, rows: 1, context: 576, logitRows: 1, streamed: [], prefetch: 1).seconds
        #expect(abs(c.stages.reduce(0) { $0 + $1.stepSeconds } - whole) / whole < 0.02)
    }

    /// With batch 4 over 2 hosts, two micro-batches overlap: the step is shorter than the stages
    /// of the whole batch one after another, and no shorter than the busiest stage.
    @Test func microBatchesOverlapTheStages() throws {
        let inv = try inventory("llama-2-70b")
        let hosts = (0..<2).map { HostSpec(name: "h\($0)", ramBudgetBytes: 40 << 30, networkBytesPerSecond: 1e10, networkLatencySeconds: 1e-6) }
        let c = try ClusterPlanner.plan(inv: inv, hosts: hosts, request: PlanRequest(budgetBytes: 40 << 30, batch: 4, promptTokens: 512, outputTokens: 128),
                                        profile: syntheticProfile(), shardExperts: true)
        #expect(c.microBatches == 2)
        let serial = c.stages.reduce(0) { $0 + $1.stepSeconds }
        #expect(c.decodeStepSeconds < serial && c.decodeStepSeconds >= c.stages.map(\.stepSeconds).max()!)
    }

    /// A 235B-A22B mixture from config.json alone over four hosts: with expert shards each host
    /// holds a quarter of every layer's experts and the whole fits in their RAM.
    @Test func aMixtureSharesItsExpertsOverTheHosts() throws {
        let inv = try inventory("qwen3-235b-a22b")
        #expect(inv.moe?.experts == 128 && inv.moe?.perToken == 8)
        let hosts = (0..<4).map { HostSpec(name: "h\($0)", ramBudgetBytes: 40 << 30, networkBytesPerSecond: 125e6, networkLatencySeconds: 2e-4) }
        let req = PlanRequest(budgetBytes: 40 << 30, batch: 1, promptTokens: 512, outputTokens: 128)
        let c = try ClusterPlanner.plan(inv: inv, hosts: hosts, request: req, profile: syntheticProfile(), shardExperts: true)
        #expect(c.shardExperts && c.stages.map { $0.endExpert! - $0.firstExpert! } == [32, 32, 32, 32])
        #expect(c.stages.allSatisfy { $0.streamedLayers.isEmpty && $0.residentBytes <= 40 << 30 })
        #expect(c.networkSecondsPerStep > 0 && c.decodeTokensPerSecond > 0)
        // too little RAM for a host's share: refused, naming the host
        var small = hosts
        small[2].ramBudgetBytes = 8 << 30
        #expect(throws: ClusterPlanError.self) { try ClusterPlanner.plan(inv: inv, hosts: small, request: req, profile: syntheticProfile(), shardExperts: true) }
    }
}
