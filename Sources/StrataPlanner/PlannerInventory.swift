import Foundation
import StrataTensor

/// What the planner knows of a model: from `config.json` and safetensors headers (or
/// `config.json` alone with a dtype). Plain data; built by `Strata`.
public struct PlannerInventory: Codable, Sendable {
    public var name: String
    public var layers: Int
    public var hidden: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var vocab: Int
    /// bytes of each transformer layer's weights (as stored)
    public var layerBytes: [Int]
    /// parameters of each layer (multiply-adds per token)
    public var layerParams: [Int]
    /// embeddings, final norm, LM head: bytes, and the LM head's parameters
    public var otherBytes: Int
    public var headParams: Int
    /// the LM head's bytes as stored (nil: f32, 4 per parameter; a 16-bit or quantized head
    /// reads fewer bytes per decode step)
    public var headBytes: Int? = nil
    /// bytes of K and V per token, all layers, in the KV type planned
    public var kvBytesPerToken: Int
    /// fixed resident bytes: runtime overhead and activations at the workload's size
    public var fixedBytes: Int
    /// `fixedBytes` by the ledger's lines (empty: all of it counted as runtime overhead)
    public var fixedLines: [LedgerLine: Int] = [:]
    /// the layers' weight dtype (nil: unknown, no widening cost)
    public var weightDType: DType? = nil
    /// the layers' matrices' bytes by dtype name, routed experts apart (empty: all `weightDType`):
    /// a decode step's linears run at each type's own kernel rate
    public var layerDTypeBytes: [String: Int] = [:]
    /// A mixture of experts, when its experts' places are known (nil: a dense model).
    public var moe: PlannerMoE? = nil

    public init(name: String, layers: Int, hidden: Int, heads: Int, kvHeads: Int, headDim: Int, vocab: Int, layerBytes: [Int],
                layerParams: [Int], otherBytes: Int, headParams: Int, kvBytesPerToken: Int, fixedBytes: Int) {
        self.name = name; self.layers = layers; self.hidden = hidden; self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
        self.vocab = vocab; self.layerBytes = layerBytes; self.layerParams = layerParams; self.otherBytes = otherBytes
        self.headParams = headParams; self.kvBytesPerToken = kvBytesPerToken; self.fixedBytes = fixedBytes
    }

    public var weightBytes: Int { otherBytes + layerBytes.reduce(0, +) }
    /// Attention multiply-adds per query row per context token (QK^T and PV, all heads).
    public var attentionMACsPerContextToken: Int { 2 * heads * headDim * layers }
}

/// What the planner knows of a mixture's routed experts.
public struct PlannerMoE: Codable, Sendable, Equatable {
    /// experts per sparse layer, and used per token
    public var experts: Int
    public var perToken: Int
    /// layers with experts
    public var sparseLayers: [Bool]
    /// bytes and parameters of one expert (the mean over the model's)
    public var expertBytes: Int
    public var expertParams: Int
    /// bytes of one expert-cache slot (`ExpertCache.slotBytes`)
    public var slotBytes: Int
    /// the experts' storage type (gpt-oss: MXFP4 beside Q8_0 attention; nil: the layers')
    public var expertDType: DType? = nil
    /// each layer without its experts: bytes and parameters
    public var denseLayerBytes: [Int]
    public var denseLayerParams: [Int]
    /// The routing the hit rate is predicted for: nil uniform (the worst case), else a Zipf law's
    /// exponent (expert of rank r chosen with probability proportional to r^-s).
    public var zipf: Double? = nil
    /// A routing histogram measured on the model (`RoutingHistogram.shares`: per sparse layer,
    /// each expert's chance to be chosen by a token), which the hit rate is predicted from when
    /// given (a benchmark's forced routing, `zipf`, comes first).
    public var routing: [[Double]]? = nil
    /// Where the routing model comes from, for the plan's text: "uniform", "zipf S", or the
    /// histogram's tokens and file.
    public var routingSource: String {
        if let zipf { return String(format: "Zipf law, exponent %.2f", zipf) }
        if let routing, !routing.isEmpty { return "measured histogram (\(routingFile ?? "given"))" }
        return "uniform (the worst case; strata profile --routing measures the model's)"
    }
    public var routingFile: String? = nil
    public init(experts: Int, perToken: Int, sparseLayers: [Bool], expertBytes: Int, expertParams: Int, slotBytes: Int,
                denseLayerBytes: [Int], denseLayerParams: [Int]) {
        self.experts = experts; self.perToken = perToken; self.sparseLayers = sparseLayers; self.expertBytes = expertBytes
        self.expertParams = expertParams; self.slotBytes = slotBytes; self.denseLayerBytes = denseLayerBytes; self.denseLayerParams = denseLayerParams
    }

    /// Steady-state share of routed experts found in a cache of `slots` slots (each sparse layer
    /// its share of them). Uniform routing: the slots per layer over its experts. A Zipf law: with
    /// LRU (the cache's policy when it holds two tokens' experts) Che's approximation (the
    /// characteristic time T where the experts' chances to be cached, 1 - e^(-q T), add up to the
    /// slots; q an expert's chance to be chosen in a step); with LFU the most popular experts'
    /// share.
    /// A measured histogram: the same over every layer's experts at once (the cache's slots are
    /// shared by the layers): Che's characteristic time over all of them under LRU, the most
    /// chosen experts of the model under LFU.
    public func steadyHitRate(slots: Int) -> Double {
        let layers = max(1, sparseLayers.filter { $0 }.count)
        let c = min(Double(experts), Double(slots) / Double(layers))
        if zipf == nil, let routing, !routing.isEmpty {
            let q = routing.flatMap { $0 }.filter { $0 > 0 }.sorted(by: >), qSum = q.reduce(0, +)
            let cap = Double(slots)
            if cap >= Double(q.count) || qSum <= 0 { return 1 }
            if !expertCacheUsesLRU(slots: slots, workingSet: perToken * layers) {
                return q.prefix(slots).reduce(0, +) / qSum
            }
            return Self.che(q, slots: cap) / qSum
        }
        guard let s = zipf else { return c / Double(experts) }
        let w = (1...experts).map { pow(Double($0), -s) }, total = w.reduce(0, +)
        let q = w.map { 1 - pow(1 - $0 / total, Double(perToken)) }
        let qSum = q.reduce(0, +)
        if c >= Double(experts) { return 1 }
        if !expertCacheUsesLRU(slots: slots, workingSet: perToken * layers) {
            return q.prefix(Int(c)).reduce(0, +) / qSum
        }
        return Self.che(q, slots: c) / qSum
    }

    /// Che's approximation of an LRU cache of `slots` over items chosen with chances `q` per step:
    /// the characteristic time T where the items' chances to be cached, 1 - e^(-q T), add up to the
    /// slots; returns the chosen items' expected hits per step, sum q (1 - e^(-q T)).
    static func che(_ q: [Double], slots c: Double) -> Double {
        var lo = 0.0, hi = 1e9
        for _ in 0..<200 {
            let t = (lo + hi) / 2
            if q.reduce(0, { $0 + 1 - exp(-$1 * t) }) < c { lo = t } else { hi = t }
        }
        return q.reduce(0) { $0 + $1 * (1 - exp(-$1 * lo)) }
    }

    /// The hit rates of a run, the cache starting empty: each step pins `pins[s]` distinct experts
    /// of a layer, found with the steady rate times the cache's filled share, the misses filling
    /// it up to its slots. Returns the hit rate of the steps from `from` on, and of every step.
    public func hitRates(slots: Int, pins: [Double], from: Int) -> (later: Double, all: Double) {
        let layers = max(1, sparseLayers.filter { $0 }.count)
        let capacity = min(Double(experts), Double(slots) / Double(layers)), steady = steadyHitRate(slots: slots)
        var filled = 0.0, hits = 0.0, total = 0.0, laterHits = 0.0, laterTotal = 0.0
        for (s, p) in pins.enumerated() {
            let h = p * steady * (capacity > 0 ? filled / capacity : 0)
            filled = min(capacity, filled + p - h)
            hits += h; total += p
            if s >= from { laterHits += h; laterTotal += p }
        }
        return (laterTotal > 0 ? laterHits / laterTotal : 0, total > 0 ? hits / total : 0)
    }

    /// A layer's expected wait for its missed experts in a decode step: of its `experts` (rounded)
    /// distinct experts M miss (binomial, `missRate` each), read one after another at `readSeconds`
    /// each while the others, in RAM, compute (`computeSeconds` each): the wait is
    /// max(0, M read - (n - M) compute), its expectation over M. (The missed experts' own compute
    /// is in the step's compute.)
    public static func exposedReadSeconds(experts: Double, missRate p: Double, readSeconds r: Double, computeSeconds c: Double) -> Double {
        let n = max(1, Int(experts.rounded())), q = min(1, max(0, p))
        var expected = 0.0
        for m in 0...n {
            let wait = Double(m) * r - Double(n - m) * c
            guard wait > 0 else { continue }
            // binomial probability of m misses
            var choose = 1.0
            for i in 0..<m { choose = choose * Double(n - i) / Double(i + 1) }
            expected += choose * pow(q, Double(m)) * pow(1 - q, Double(n - m)) * wait
        }
        return expected
    }

    /// Distinct experts a layer runs for `tokens` tokens routed uniformly: E (1 - (1 - k/E)^n);
    /// with a measured histogram, the layers' mean of the sum over experts of 1 - (1 - q)^n.
    public func distinctExperts(tokens: Int) -> Double {
        if zipf == nil, let routing, !routing.isEmpty {
            let n = Double(tokens)
            return routing.reduce(0.0) { acc, l in acc + l.reduce(0.0) { $0 + 1 - pow(1 - min(1, $1), n) } } / Double(routing.count)
        }
        return Double(experts) * (1 - pow(1 - Double(perToken) / Double(experts), Double(tokens)))
    }
}
