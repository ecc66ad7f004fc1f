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
}

extension WeightStore {
    public var streams: Bool { false }
}
