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
    /// Where `layer`'s routed experts held by other processes are computed (expert shards of a
    /// distributed run; nil: every expert is here).
    func shards(layer: Int) -> ExpertShards?
}

extension WeightStore {
    public var streams: Bool { false }
    public func experts(layer: Int) -> ExpertSource? { nil }
    public func shards(layer: Int) -> ExpertShards? { nil }
}

/// A mixture's routed experts spread over the processes of a distributed run (StrataMPI): each
/// process holds a contiguous range of every layer's experts in RAM. A layer of experts sends
/// the rows routed to another process's experts there, one message per process (`send`), runs
/// its own experts meanwhile, and takes the outputs back (`receive`), which it adds in expert
/// order as if every expert were here (the same sums, bit for bit).
public protocol ExpertShards: AnyObject {
    /// This process's index among those holding experts, and their number.
    var rank: Int { get }
    var ranks: Int { get }
    /// The experts of `layer` process `rank` holds (a contiguous range of indices).
    func experts(of rank: Int, layer: Int) -> Range<Int>
    /// Sends `rank` the rows routed to its experts of `layer`: `experts[i]` (ids, increasing)
    /// with `counts[i]` rows each, whose rows are `xn[rowIDs[...]]` (`hidden` wide) in order.
    /// Returns once the message is on its way.
    func send(layer: Int, to rank: Int, experts: UnsafeBufferPointer<Int32>, counts: UnsafeBufferPointer<Int32>,
              rowIDs: UnsafeBufferPointer<Int32>, xn: UnsafePointer<Float>, hidden: Int) throws
    /// Waits for `rank`'s outputs of the rows last sent to it (`rows` rows, `hidden` wide, in the
    /// order sent) into `out`; serves the other processes' requests while it waits.
    func receive(layer: Int, from rank: Int, into out: UnsafeMutablePointer<Float>, rows: Int, hidden: Int) throws
}

extension ExpertShards {
    public func holds(layer: Int, expert: Int) -> Bool { experts(of: rank, layer: layer).contains(expert) }
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
