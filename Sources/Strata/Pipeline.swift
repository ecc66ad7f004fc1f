import Foundation
import StrataMemory
import StrataModels
import StrataPlanner
import StrataTensor

/// A model split into pipeline stages across processes (ranks of an MPI job; the `StrataMPI`
/// module implements it, so this library builds without MPI). Each rank holds a contiguous range
/// of layers; the first rank (0) owns the tokenizer, the scheduler and the API, and sends every
/// pass through the others. `TieredRun` consults `Pipeline.current` when it loads a model: it
/// places and loads only this rank's layers (the others' tensors are zero pages, never read),
/// keeps K/V for those layers only, and on rank 0 wraps the model (`wrap`).
public protocol Pipeline: AnyObject, Sendable {
    /// This process's rank and the number of ranks (stages).
    var rank: Int { get }
    var size: Int { get }
    /// This rank's layers of `inventory`'s model.
    func layers(_ inventory: WeightInventory) throws -> Range<Int>
    /// Rank 0: tells the other stages what it placed (they place theirs alike); others: waits for it.
    func agree(_ setup: StageSetup?) throws -> StageSetup
    /// The model this rank runs: on rank 0 one whose passes run its own stage of `model` and then
    /// the other ranks'; on the others `model` with K/V for its layers only.
    func wrap(_ model: CausalLM, layers: Range<Int>) throws -> CausalLM
    /// The routed experts spread over the ranks (after `layers`), or nil when each stage holds
    /// its layers' experts. With shards every rank holds its weights in RAM (nothing streamed).
    func expertShards(_ inventory: WeightInventory) throws -> ExpertShards?
}

/// What every stage must agree on: the KV pool's geometry (the first stage's block tables are
/// followed by all) and the workload and weight mode the stages place for.
public struct StageSetup: Sendable, Equatable {
    public var kvBlocks: Int
    public var blockSize: Int
    public var kvType: DType
    public var workload: Workload
    public var weights: Placement.Weights
    public var prefetchDepth: Int
    public init(kvBlocks: Int, blockSize: Int, kvType: DType, workload: Workload, weights: Placement.Weights, prefetchDepth: Int) {
        self.kvBlocks = kvBlocks; self.blockSize = blockSize; self.kvType = kvType; self.workload = workload; self.weights = weights
        self.prefetchDepth = prefetchDepth
    }
}

public enum Pipelines {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var installed: Pipeline?
    /// The pipeline this process is a stage of (set once at start by the CLI under `mpirun`).
    public static var current: Pipeline? {
        get { lock.lock(); defer { lock.unlock() }; return installed }
        set { lock.lock(); installed = newValue; lock.unlock() }
    }
}

extension WeightInventory {
    /// The inventory of a stage that holds `layers` only: other layers' tensors left out and
    /// their bytes 0 (the placement of a stage sees only what it holds).
    public func keeping(layers: Range<Int>) -> WeightInventory {
        var inv = self
        inv.locations = locations.filter { $0.layer < 0 || layers.contains($0.layer) }
        for l in layerBytes.indices where !layers.contains(l) {
            inv.layerBytes[l] = 0
            inv.expertLayerBytes[l] = 0
            inv.layerVectorBytes[l] = 0
            if l < inv.experts.count { inv.experts[l] = [] }
        }
        return inv
    }
}

public enum PipelineError: Error, CustomStringConvertible {
    case kvPoolDiffers(rank: Int, budget: Int?, blocks: Int, wanted: Int)
    case notSupported(String)
    /// A later stage failed during a pass (its message names the rank).
    case stageFailed(String)
    public var description: String {
        switch self {
        case let .kvPoolDiffers(r, b, n, w):
            return "rank \(r): its RAM budget \(b.map(formatBytes) ?? "(none)") holds \(n) KV blocks for its layers beside its weights; the first stage uses \(w) (give this rank more RAM, or rank 0 less KV with --kv-blocks)"
        case let .notSupported(s): return s
        case let .stageFailed(s): return s
        }
    }
}
