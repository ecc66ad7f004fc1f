import Foundation
import StrataPlanner
import StrataFormats
import StrataMemory
import StrataModels
import StrataTensor

/// What a run measured (the `measured` object of `--report`).
public struct Measured: Codable, Sendable {
    public var prefillTokensPerSecond: Double
    /// per sequence: decode-only steps per second (each running sequence gains a token a step)
    public var decodeTokensPerSecond: Double
    /// mean seconds of a decode-only step, and its mean rows (running sequences)
    public var decodeStepSeconds: Double = 0
    public var decodeRowsPerStep: Double = 0
    public var aggregateTokensPerSecond: Double
    public var timeToFirstTokenSeconds: Double
    public var diskBytesRead: Int
    public var diskReadBytesPerSecond: Double
    public var computeSeconds: Double
    public var ioWaitSeconds: Double
    public var peakResidentBytes: Int
    public var peakResidentLines: [String: Int]
    public var peakRSSBytes: Int
    public var kvBlocksSwapped: Int
    public var wallSeconds: Double
    public var promptTokens: Int
    public var generatedTokens: Int
    /// A mixture read through the expert cache: its hits, misses and reads (per layer too).
    public var expertCache: ExpertCacheStats? = nil
    /// The share of routed experts found in RAM, and per layer (nil without an expert cache).
    public var expertHitRate: Double? = nil
    public var expertLayerHitRates: [Double]? = nil

    enum CodingKeys: String, CodingKey {
        case prefillTokensPerSecond = "prefill_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
        case decodeStepSeconds = "decode_step_seconds", decodeRowsPerStep = "decode_rows_per_step"
        case aggregateTokensPerSecond = "aggregate_tokens_per_second", timeToFirstTokenSeconds = "time_to_first_token_seconds"
        case diskBytesRead = "disk_bytes_read", diskReadBytesPerSecond = "disk_read_bytes_per_second"
        case computeSeconds = "compute_seconds", ioWaitSeconds = "io_wait_seconds", peakResidentBytes = "peak_resident_bytes"
        case peakResidentLines = "peak_resident_lines", peakRSSBytes = "peak_rss_bytes", kvBlocksSwapped = "kv_blocks_swapped"
        case wallSeconds = "wall_seconds", promptTokens = "prompt_tokens", generatedTokens = "generated_tokens"
        case expertCache = "expert_cache", expertHitRate = "expert_hit_rate", expertLayerHitRates = "expert_layer_hit_rates"
    }
}

/// The `--report FILE` JSON: what ran, under which budget and placement, and what it measured.
public struct RunReport: Codable, Sendable {
    public var model: String
    public var ramBudgetBytes: Int?
    public var workload: Workload
    public var placement: Placement
    public var measured: Measured
    /// The planner's prediction for this run (same keys as `measured`), when a plan was used.
    public var predicted: [String: Double]?
    /// Relative error (measured - predicted) / predicted of each predicted key.
    public var error: [String: Double]?
    /// The fill-the-budget rule's placement at the same batch, as the planner predicted it
    /// (aggregate tokens/s), when a plan was used.
    public var predictedRuleTokensPerSecond: Double?
    /// The run was stopped by Ctrl-C (SIGINT/SIGTERM): its figures cover what ran until then.
    public var interrupted: Bool? = nil
    /// A run over MPI ranks: the split, the links measured at start and the cluster planner's
    /// prediction for them (its decode speed is then `predicted`'s; `measured` is rank 0's).
    public var pipeline: PipelineReport? = nil

    enum CodingKeys: String, CodingKey {
        case model, ramBudgetBytes = "ram_budget_bytes", workload, placement, measured, predicted, error
        case predictedRuleTokensPerSecond = "predicted_rule_aggregate_tokens_per_second", interrupted, pipeline
    }

    /// The measured values under the keys a prediction has.
    public var measuredValues: [String: Double] {
        var v: [String: Double] = [
            "prefill_tokens_per_second": measured.prefillTokensPerSecond, "decode_tokens_per_second": measured.decodeTokensPerSecond,
            "aggregate_tokens_per_second": measured.aggregateTokensPerSecond, "time_to_first_token_seconds": measured.timeToFirstTokenSeconds,
            "disk_bytes_read": Double(measured.diskBytesRead), "peak_resident_bytes": Double(measured.peakResidentBytes),
        ]
        if let h = measured.expertHitRate { v["expert_hit_rate"] = h }
        return v
    }

    /// Fills `predicted` and `error` from a plan's prediction.
    public mutating func compare(with p: [String: Double]) {
        let m = measuredValues
        predicted = p
        var e: [String: Double] = [:]
        for (k, v) in p { if let mv = m[k], v != 0 { e[k] = (mv - v) / v } }
        error = e
    }
}

/// What a run over MPI ranks was split into and measured at start (`RunReport.pipeline`).
public struct PipelineReport: Codable, Sendable {
    enum CodingKeys: String, CodingKey {
        case ranks, layers, experts, linkBytesPerSecond = "link_bytes_per_second", linkLatencySeconds = "link_latency_seconds", plan
    }
    public var ranks: Int
    /// each rank's layers `[first, end)`, and with expert shards its experts of every layer
    public var layers: [[Int]]
    public var experts: [[Int]]?
    /// the link from each rank to the next (the last: to rank 0)
    public var linkBytesPerSecond: [Double]
    public var linkLatencySeconds: [Double]
    /// the cluster planner's plan for this split (nil when it could not plan it)
    public var plan: ClusterPlan?
    public init(ranks: Int, layers: [[Int]], experts: [[Int]]?, linkBytesPerSecond: [Double], linkLatencySeconds: [Double], plan: ClusterPlan?) {
        self.ranks = ranks; self.layers = layers; self.experts = experts; self.linkBytesPerSecond = linkBytesPerSecond
        self.linkLatencySeconds = linkLatencySeconds; self.plan = plan
    }
}
