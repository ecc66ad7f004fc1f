/// Where a model's weights come from. A forward pass asks for a layer before using it
/// (`acquire`, which may wait for a streamed layer to arrive from disk) and hands it back after
/// (`release`, which lets its staging memory take the next layer). Models do no I/O themselves.
///
/// `tensor(_:layer:)` is called once per tensor when the model is built; the tensor it returns
/// stays valid for the model's life, but a streamed layer's tensors hold that layer's values
/// only between `acquire(layer:)` and `release(layer:)`. `layer` is -1 for tensors outside
/// the transformer layers (embeddings, final norm, LM head).
public protocol WeightStore: AnyObject, Sendable {
    func contains(_ name: String) -> Bool
    func tensor(_ name: String, layer: Int) throws -> Tensor
    func acquire(layer: Int) throws
    func release(layer: Int)
    /// A name for error messages (the model folder).
    var location: String { get }
    /// Whether `acquire`/`release` carry state between calls (layers streamed in order): then
    /// forward passes over the store must not overlap.
    var streams: Bool { get }
    /// The routed experts of `layer` when they are read one by one (nil: they are among the
    /// layer's tensors, read with it).
    func experts(layer: Int) -> ExpertSource?
}

extension WeightStore {
    public var streams: Bool { false }
    public func experts(layer: Int) -> ExpertSource? { nil }
}

/// One routed expert's three matrices (`[rows, cols]` views, valid while the expert is pinned).
public struct ExpertWeights {
    public var gate: Tensor, up: Tensor, down: Tensor
    public init(gate: Tensor, up: Tensor, down: Tensor) { self.gate = gate; self.up = up; self.down = down }
}

/// Where a layer's routed experts come from when they are not among its tensors: an expert
/// cache that reads each expert from disk when it is routed to and not in RAM. A forward pass
/// pins the experts its tokens chose (`pin`: the missing ones start to be read, concurrently,
/// and it returns at once), computes those already in RAM (`ready`) while the others arrive
/// (`wait`), and hands them back after (`unpin`); a pinned expert is never evicted.
public protocol ExpertSource: AnyObject {
    /// Slots of the cache: at most this many experts are pinned at once.
    var slotCount: Int { get }
    /// Pins `experts` of `layer` and starts reading the missing ones; their weights in the same
    /// order (valid once `ready`/`wait` says so). At most `slotCount` at once.
    func pin(layer: Int, experts: ArraySlice<Int>, into weights: inout [ExpertWeights]) throws
    /// Whether the `index`-th expert of the last `pin` is in RAM.
    func ready(_ index: Int) -> Bool
    /// Waits until the `index`-th expert of the last `pin` is in RAM; throws its read's error.
    func wait(_ index: Int) throws
    /// Lets the last `pin`'s experts (`experts` of `layer`) be evicted again, after their reads end.
    func unpin(layer: Int, experts: ArraySlice<Int>)
}

/// Which policy an expert cache of `slots` slots evicts by, when none is forced: LRU when the
/// slots hold two tokens' experts (`workingSet`: k experts of every sparse layer), LFU when they
/// do not (a pass visits the layers in a cycle, and an LRU smaller than the cycle evicts each
/// expert just before it is needed again). The run's cache and the planner's model both ask here.
public func expertCacheUsesLRU(slots: Int, workingSet: Int) -> Bool { slots >= 2 * workingSet }
