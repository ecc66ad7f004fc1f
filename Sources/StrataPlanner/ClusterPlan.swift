import Foundation
import StrataTensor

/// Splits `layerBytes` into `weights.count` contiguous ranges, each as close as the layer
/// boundaries allow to its share of the bytes (share = weight / sum of weights; every range has
/// at least one layer). Pure: every rank of a distributed run computes the same split, and the
/// cluster planner predicts that split.
public func splitLayers(_ layerBytes: [Int], weights: [Double]) -> [Range<Int>] {
    let n = layerBytes.count, k = weights.count
    precondition(k >= 1 && k <= n && weights.allSatisfy { $0 > 0 }, "splitLayers: \(k) stages of \(n) layers")
    let total = Double(layerBytes.reduce(0, +)), sum = weights.reduce(0, +)
    var ranges: [Range<Int>] = []
    var start = 0, acc = 0.0, target = 0.0
    for s in 0..<k {
        if s == k - 1 { ranges.append(start..<n); break }
        target += total * weights[s] / sum
        var end = start + 1  // at least one layer
        acc += Double(layerBytes[start])
        // take the next layer while that brings the cut closer to the target, leaving a layer for each later stage
        while end < n - (k - 1 - s) && abs(acc + Double(layerBytes[end]) - target) <= abs(acc - target) {
            acc += Double(layerBytes[end]); end += 1
        }
        ranges.append(start..<end)
        start = end
    }
    return ranges
}

/// One host (one rank) of a distributed run, as `strata plan --hosts` reads it.
public struct HostSpec: Codable, Sendable {
    enum CodingKeys: String, CodingKey {
        case name, ramBudgetBytes = "ram_budget_bytes", profile, networkBytesPerSecond = "network_bytes_per_second"
        case networkLatencySeconds = "network_latency_seconds"
    }
    public var name: String
    public var ramBudgetBytes: Int
    /// The host's measured profile (`strata profile`; nil: the planning machine's).
    public var profile: HardwareProfile?
    /// The link to the next host (the last host's: back to the first), one way.
    public var networkBytesPerSecond: Double
    public var networkLatencySeconds: Double
    public init(name: String, ramBudgetBytes: Int, profile: HardwareProfile? = nil, networkBytesPerSecond: Double, networkLatencySeconds: Double) {
        self.name = name; self.ramBudgetBytes = ramBudgetBytes; self.profile = profile
        self.networkBytesPerSecond = networkBytesPerSecond; self.networkLatencySeconds = networkLatencySeconds
    }
}

/// What the cluster planner decided and predicts for a model over hosts.
public struct ClusterPlan: Codable, Sendable {
    enum CodingKeys: String, CodingKey {
        case model, batch, microBatches = "micro_batches", shardExperts = "shard_experts", stages
        case decodeStepSeconds = "decode_step_seconds", decodeTokensPerSecond = "decode_tokens_per_second"
        case aggregateTokensPerSecond = "aggregate_tokens_per_second", networkSecondsPerStep = "network_seconds_per_step"
        case oneHostDecodeTokensPerSecond = "one_host_decode_tokens_per_second", oneHostNote = "one_host_note"
    }
    public struct Stage: Codable, Sendable {
        enum CodingKeys: String, CodingKey {
            case host, firstLayer = "first_layer", endLayer = "end_layer", firstExpert = "first_expert", endExpert = "end_expert"
            case residentBytes = "resident_bytes", streamedLayers = "streamed_layers", stepSeconds = "step_seconds"
            case microBatchSeconds = "micro_batch_seconds", hopSeconds = "hop_seconds"
        }
        public var host: String
        /// layers `firstLayer ..< endLayer`; with expert shards, experts `firstExpert ..< endExpert` of every layer
        public var firstLayer: Int, endLayer: Int
        public var firstExpert: Int?, endExpert: Int?
        /// RAM this host's placement holds, and the layers it streams from its disk
        public var residentBytes: Int
        public var streamedLayers: [Int]
        /// this stage's share of a decode step of the whole batch, and of one micro-batch
        public var stepSeconds: Double
        public var microBatchSeconds: Double
        /// sending one micro-batch's activations to the next host (the last: logits back to the first)
        public var hopSeconds: Double
    }
    public var model: String
    public var batch: Int
    public var microBatches: Int
    public var shardExperts: Bool
    public var stages: [Stage]
    public var decodeStepSeconds: Double
    /// per sequence, and over the batch
    public var decodeTokensPerSecond: Double
    public var aggregateTokensPerSecond: Double
    public var networkSecondsPerStep: Double
    /// the same model on the first host alone, under its budget (nil: it cannot run there; the note says why)
    public var oneHostDecodeTokensPerSecond: Double?
    public var oneHostNote: String?
}

public enum ClusterPlanError: Error, CustomStringConvertible {
    case tooManyHosts(hosts: Int, layers: Int)
    case tooManyHostsForExperts(hosts: Int, experts: Int)
    case doesNotFit(host: String, reason: String)
    public var description: String {
        switch self {
        case let .tooManyHosts(h, l): return "\(h) hosts for a model of \(l) layers: each host needs a layer"
        case let .tooManyHostsForExperts(h, e): return "\(h) hosts for \(e) experts a layer: each host needs an expert"
        case let .doesNotFit(h, r): return "host \(h): \(r)"
        }
    }
}

/// Plans a model over several hosts as `strata generate`/`serve` under `mpirun` run it: the
/// layers split in proportion to the hosts' budgets (`splitLayers`, the run's own split), each
/// host's stage placed under its budget by the one-host planner (its layers resident or streamed
/// from its disk), and a decode step simulated as the pipeline runs it: `min(hosts, batch)`
/// micro-batches flow through the stages, each hop costing the link's latency plus the
/// activations' bytes over its bandwidth. With expert shards every host holds its share of every
/// layer's experts in RAM; a layer of experts then costs the largest share of the k experts'
/// work plus a round trip to the other hosts. Pure: no I/O.
public enum ClusterPlanner {
    public static func plan(inv: PlannerInventory, hosts: [HostSpec], request: PlanRequest, profile defaultProfile: HardwareProfile,
                            shardExperts: Bool) throws -> ClusterPlan {
        let n = hosts.count, L = inv.layers
        guard n >= 1, n <= L else { throw ClusterPlanError.tooManyHosts(hosts: n, layers: L) }
        let batch = max(1, request.batch ?? 1)
        let weights = hosts.map { Double(max(1, $0.ramBudgetBytes)) }
        let shard = shardExperts && inv.moe != nil && n > 1
        let moe = inv.moe
        let ranges = splitLayers(shard ? moe!.denseLayerBytes.map { max(1, $0) } : inv.layerBytes, weights: weights)
        var expertRanges: [Range<Int>] = []
        if shard {
            guard moe!.experts >= n else { throw ClusterPlanError.tooManyHostsForExperts(hosts: n, experts: moe!.experts) }
            expertRanges = splitLayers([Int](repeating: 1, count: moe!.experts), weights: weights)
        }
        let sparseCount = moe?.sparseLayers.filter { $0 }.count ?? 0
        let m = min(n, batch)
        let rowsPerMicro = (0..<m).map { batch * ($0 + 1) / m - batch * $0 / m }
        var stages: [ClusterPlan.Stage] = []
        var microSeconds: [[Double]] = []  // [stage][micro-batch]
        for (s, host) in hosts.enumerated() {
            let profile = host.profile ?? defaultProfile
            let r = ranges[s]
            var sub = PlannerInventory(name: inv.name, layers: r.count, hidden: inv.hidden, heads: inv.heads, kvHeads: inv.kvHeads, headDim: inv.headDim,
                                       vocab: inv.vocab, layerBytes: Array(inv.layerBytes[r]), layerParams: Array(inv.layerParams[r]),
                                       otherBytes: inv.otherBytes, headParams: s == n - 1 ? inv.headParams : 0,
                                       kvBytesPerToken: inv.kvBytesPerToken * r.count / L, fixedBytes: inv.fixedBytes)
            sub.headBytes = s == n - 1 ? inv.headBytes : 0
            sub.fixedLines = inv.fixedLines
            sub.weightDType = inv.weightDType
            sub.layerDTypeBytes = inv.layerDTypeBytes
            var networkPerStep = 0.0
            if let moe {
                if shard {
                    // held: this host's share of every sparse layer's experts (resident); a token's work in
                    // a sparse layer: the largest share of its k experts (the hosts run theirs at once)
                    let share = Double(expertRanges[s].count) / Double(moe.experts)
                    let most = Double(expertRanges.map(\.count).max()!) / Double(moe.experts)
                    sub.otherBytes += Int(share * Double(moe.experts * moe.expertBytes * sparseCount))
                    for (i, l) in r.enumerated() where moe.sparseLayers[l] {
                        sub.layerBytes[i] = moe.denseLayerBytes[l] + Int(most * Double(moe.perToken * moe.expertBytes))
                        sub.layerParams[i] = moe.denseLayerParams[l] + Int(most * Double(moe.perToken * moe.expertParams))
                        // rows out to the other hosts and their outputs back
                        networkPerStep += 2 * (host.networkLatencySeconds + Double(batch * inv.hidden * 4) * (1 - share) / host.networkBytesPerSecond)
                    }
                } else if sub.layerBytes.reduce(0, +) + sub.otherBytes + inv.fixedBytes <= host.ramBudgetBytes {
                    // the stage's experts all fit: held in RAM, a token's work is its k experts
                    for (i, l) in r.enumerated() where moe.sparseLayers[l] {
                        sub.otherBytes += (moe.experts - moe.perToken) * moe.expertBytes
                        sub.layerBytes[i] = moe.denseLayerBytes[l] + moe.perToken * moe.expertBytes
                        sub.layerParams[i] = moe.denseLayerParams[l] + moe.perToken * moe.expertParams
                    }
                } else {
                    // the stage's experts through its expert cache, as the one-host planner plans it
                    var sm = moe
                    sm.sparseLayers = Array(moe.sparseLayers[r])
                    sm.denseLayerBytes = Array(moe.denseLayerBytes[r])
                    sm.denseLayerParams = Array(moe.denseLayerParams[r])
                    sub.moe = sm
                }
            }
            var req = request
            req.budgetBytes = host.ramBudgetBytes
            req.batch = batch
            let plan: Plan
            do { plan = try Planner.plan(inv: sub, profile: profile, request: req, curve: false) } catch {
                throw ClusterPlanError.doesNotFit(host: host.name, reason: "\(error)")
            }
            if shard && !plan.streamedLayers.isEmpty {
                throw ClusterPlanError.doesNotFit(host: host.name, reason: "with expert shards a host holds its layers and experts in RAM; its budget of \(host.ramBudgetBytes) bytes holds only part of them")
            }
            var cost = CostModel(profile: profile)
            cost.dtype = sub.weightDType
            cost.dtypeMix = CostModel.mix(sub.layerDTypeBytes.mapValues(Double.init))
            cost.bf16Products = request.bf16Products ?? false
            cost.exactActivations = request.exactActivations ?? false
            let context = request.promptTokens + request.outputTokens / 2
            let perMicro = rowsPerMicro.map { b in
                cost.pass(inv: sub, rows: b, context: context, logitRows: b, streamed: Set(plan.streamedLayers), prefetch: plan.prefetchDepth).seconds
                    + networkPerStep * Double(b) / Double(batch)
            }
            microSeconds.append(perMicro)
            // a hop: the rows' residual stream to the next host, or the logits back to the first
            let width = s == n - 1 ? inv.vocab : inv.hidden
            let hop = n == 1 ? 0 : host.networkLatencySeconds + Double(rowsPerMicro[0] * width * 4) / host.networkBytesPerSecond
            stages.append(ClusterPlan.Stage(host: host.name, firstLayer: r.lowerBound, endLayer: r.upperBound,
                                            firstExpert: shard ? expertRanges[s].lowerBound : nil, endExpert: shard ? expertRanges[s].upperBound : nil,
                                            residentBytes: plan.prediction.peakResidentBytes, streamedLayers: plan.streamedLayers.map { $0 + r.lowerBound },
                                            stepSeconds: perMicro.reduce(0, +), microBatchSeconds: perMicro[0], hopSeconds: hop))
        }
        // the step as the pipeline runs it: micro-batch j enters stage s when stage s is done with
        // j - 1 and j has crossed the link from s - 1; the step ends when the last logits are back
        var end = [[Double]](repeating: [Double](repeating: 0, count: n), count: m)
        var network = 0.0
        for j in 0..<m {
            for s in 0..<n {
                let arrive = s == 0 ? 0 : end[j][s - 1] + stages[s - 1].hopSeconds
                let free = j == 0 ? 0 : end[j - 1][s]
                end[j][s] = max(arrive, free) + microSeconds[s][j]
                if s > 0 { network += stages[s - 1].hopSeconds }
            }
            network += stages[n - 1].hopSeconds
        }
        let step = (0..<m).map { end[$0][n - 1] + stages[n - 1].hopSeconds }.max() ?? 0
        // the first host alone
        var oneHost: Double? = nil, note: String? = nil
        do {
            var req = request
            req.budgetBytes = hosts[0].ramBudgetBytes
            req.batch = batch
            oneHost = try Planner.plan(inv: inv, profile: hosts[0].profile ?? defaultProfile, request: req, curve: false).prediction.decodeTokensPerSecond
        } catch {
            note = "\(error)"
        }
        return ClusterPlan(model: inv.name, batch: batch, microBatches: m, shardExperts: shard, stages: stages, decodeStepSeconds: step,
                           decodeTokensPerSecond: step > 0 ? 1 / step : 0, aggregateTokensPerSecond: step > 0 ? Double(batch) / step : 0,
                           networkSecondsPerStep: network, oneHostDecodeTokensPerSecond: oneHost, oneHostNote: note)
    }
}
