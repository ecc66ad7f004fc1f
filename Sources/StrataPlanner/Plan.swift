import Foundation
import StrataTensor

/// The planner's question.
public struct PlanRequest: Codable, Sendable {
    /// snake_case in JSON, as every JSON output of Strata
    enum CodingKeys: String, CodingKey { case budgetBytes = "budget_bytes", batch, promptTokens = "prompt_tokens", outputTokens = "output_tokens", objective, blockSize = "block_size", maxBatch = "max_batch", maxPrefetch = "max_prefetch", bf16Products = "bf16_products", exactActivations = "exact_activations", kvType = "kv_type" }

    public enum Objective: String, Codable, Sendable { case throughput, latency }
    public var budgetBytes: Int
    /// nil: the planner chooses
    public var batch: Int?
    public var promptTokens: Int
    public var outputTokens: Int
    public var objective: Objective
    public var blockSize: Int
    public var maxBatch: Int
    public var maxPrefetch: Int
    /// Whether prefill GEMMs run with bf16 products (`Kernels.prefillUsesBF16Products` of the
    /// weights' dtype, decided by the caller; nil: no)
    public var bf16Products: Bool?
    /// Whether quantized weights decode with exact f32 activations (`Kernels.activations == .f32`,
    /// decided by the caller; nil: no, 8-bit ones)
    public var exactActivations: Bool?
    /// What the KV cache stores (the inventory's KV bytes per token are counted in it; nil: f32)
    public var kvType: DType?
    public init(budgetBytes: Int, batch: Int? = nil, promptTokens: Int, outputTokens: Int, objective: Objective = .throughput,
                blockSize: Int = 16, maxBatch: Int = 64, maxPrefetch: Int = 3, bf16Products: Bool? = nil, exactActivations: Bool? = nil,
                kvType: DType? = nil) {
        self.budgetBytes = budgetBytes; self.batch = batch; self.promptTokens = promptTokens; self.outputTokens = outputTokens
        self.objective = objective; self.blockSize = blockSize; self.maxBatch = maxBatch; self.maxPrefetch = maxPrefetch
        self.bf16Products = bf16Products; self.exactActivations = exactActivations; self.kvType = kvType
    }
}

/// Times the cost model predicts (seconds and tokens/s), with the terms that make them.
public struct Prediction: Codable, Sendable, Equatable {
    public var prefillTokensPerSecond: Double
    public var decodeTokensPerSecond: Double
    public var aggregateTokensPerSecond: Double
    public var timeToFirstTokenSeconds: Double
    public var decodeStepSeconds: Double
    /// per decode step
    public var computeSeconds: Double
    public var residentReadSeconds: Double
    public var diskReadSeconds: Double
    public var diskBytesRead: Int
    public var peakResidentBytes: Int
    /// the largest term of a decode step: compute, memory or disk
    public var bottleneck: String
    /// A mixture read through the expert cache: the share of routed experts predicted in RAM.
    public var expertHitRate: Double? = nil

    enum CodingKeys: String, CodingKey {
        case prefillTokensPerSecond = "prefill_tokens_per_second", decodeTokensPerSecond = "decode_tokens_per_second"
        case aggregateTokensPerSecond = "aggregate_tokens_per_second", timeToFirstTokenSeconds = "time_to_first_token_seconds"
        case decodeStepSeconds = "decode_step_seconds", computeSeconds = "compute_seconds", residentReadSeconds = "resident_read_seconds"
        case diskReadSeconds = "disk_read_seconds", diskBytesRead = "disk_bytes_read", peakResidentBytes = "peak_resident_bytes"
        case bottleneck, expertHitRate = "expert_hit_rate"
    }
}

/// The planner's answer: a placement with its prediction and the ledger behind it.
public struct Plan: Codable, Sendable {
    /// The version of this JSON form (`schema_version`): a file of another version is refused by
    /// name rather than read wrong. 1: snake_case fields throughout (the fifteenth session).
    public static let schemaVersion = 1
    public var schemaVersion: Int = Plan.schemaVersion
    public var model: String
    public var request: PlanRequest
    public var batch: Int
    public var prefetchDepth: Int
    public var streamedLayers: [Int]
    public var kvBlocksRAM: Int
    public var kvBlocksDisk: Int
    public var blockSize: Int
    /// ledger lines: bytes
    public var ledger: [String: Int]
    public var prediction: Prediction
    /// which constraint decided the plan
    public var binding: String
    /// predicted aggregate tokens/s with more RAM: (budget bytes, tokens/s)
    public var budgetCurve: [[Double]]
    public var moreRAM: String
    /// the rule's placement at the same batch, predicted by the same model (tokens/s of the
    /// objective: aggregate for throughput, per sequence for latency), and the comparison
    public var ruleTokensPerSecond: Double = 0
    public var versusRule: String = ""
    /// A mixture's expert-cache slots (0: experts with their layers).
    public var expertSlots: Int = 0

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version", model, request, batch, prefetchDepth = "prefetch_depth", streamedLayers = "streamed_layers", kvBlocksRAM = "kv_blocks_ram"
        case kvBlocksDisk = "kv_blocks_disk", blockSize = "block_size", ledger, prediction, binding, budgetCurve = "budget_curve"
        case moreRAM = "more_ram", ruleTokensPerSecond = "rule_tokens_per_second", versusRule = "versus_rule"
        case expertSlots = "expert_slots"
    }
}

extension Plan {
    /// Decodes a saved plan; plans saved before the rule comparison existed decode without it.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let version = try c.decodeIfPresent(Int.self, forKey: .schemaVersion)
        guard version == Plan.schemaVersion else {
            throw DecodingError.dataCorruptedError(forKey: .schemaVersion, in: c, debugDescription:
                "plan schema_version \(version.map(String.init) ?? "missing (a plan from before Strata 0.15)") where this Strata reads \(Plan.schemaVersion); run strata plan again")
        }
        model = try c.decode(String.self, forKey: .model)
        request = try c.decode(PlanRequest.self, forKey: .request)
        batch = try c.decode(Int.self, forKey: .batch)
        prefetchDepth = try c.decode(Int.self, forKey: .prefetchDepth)
        streamedLayers = try c.decode([Int].self, forKey: .streamedLayers)
        kvBlocksRAM = try c.decode(Int.self, forKey: .kvBlocksRAM)
        kvBlocksDisk = try c.decode(Int.self, forKey: .kvBlocksDisk)
        blockSize = try c.decode(Int.self, forKey: .blockSize)
        ledger = try c.decode([String: Int].self, forKey: .ledger)
        prediction = try c.decode(Prediction.self, forKey: .prediction)
        binding = try c.decode(String.self, forKey: .binding)
        budgetCurve = try c.decode([[Double]].self, forKey: .budgetCurve)
        moreRAM = try c.decode(String.self, forKey: .moreRAM)
        ruleTokensPerSecond = try c.decodeIfPresent(Double.self, forKey: .ruleTokensPerSecond) ?? 0
        versusRule = try c.decodeIfPresent(String.self, forKey: .versusRule) ?? ""
        expertSlots = try c.decodeIfPresent(Int.self, forKey: .expertSlots) ?? 0
    }
}

public enum PlanError: Error, CustomStringConvertible, Equatable, Sendable {
    case budgetTooSmall(budget: Int, minimum: Int)
    public var description: String {
        switch self {
        case let .budgetTooSmall(b, m):
            return "RAM budget \(b) bytes is too small: the smallest plan for this model and workload needs \(m) bytes"
        }
    }
}
