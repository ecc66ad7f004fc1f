import Foundation
@_exported import StrataFormats
@_exported import StrataModels
import StrataTensor
import StrataMemory

/// A loaded model folder: the model (weights mapped), its tokenizer, and its BOS/EOS ids.
public final class LoadedModel: @unchecked Sendable {
    /// The opened folder (config, headers, tokenizer read once).
    public let folder: ModelFolder
    public var directory: String { folder.directory }
    public let model: CausalLM
    /// nil when the folder has no tokenizer.json (then only ids can be used).
    public let tokenizer: Tokenizer?
    public let bos: [Int]
    public let eos: Set<Int>

    /// Loads `config.json`, `*.safetensors` (zero-copy), `tokenizer.json` and `generation_config.json`.
    public convenience init(directory: String) throws {
        try self.init(folder: ModelFolder(path: directory))
    }

    /// The opened folder's model (weights mapped, or `model` when given: e.g. one whose
    /// weights come from a tiered store), tokenizer and generation settings.
    public init(folder: ModelFolder, model: CausalLM? = nil) throws {
        self.folder = folder
        self.model = try model ?? folder.load()
        tokenizer = folder.tokenizer
        let ids = folder.generationTokens
        bos = ids.bos
        eos = Set(ids.eos)
    }

    /// The folder at `directory` with its weights placed as `weights` says: `.mmap` views the
    /// mapped files (instant; the page cache holds the bytes, mostly in 4 KiB pages); `.tiered`
    /// reads every tensor into the process's own memory, 2 MiB-aligned with transparent huge
    /// pages asked for (as planned runs, `Session` and the server place an in-RAM model): a
    /// 16-bit decode reads it a few percent faster (docs/kernels.md), for a load of seconds.
    public convenience init(directory: String, weights: Placement.Weights) throws {
        let folder = try ModelFolder(path: directory)
        switch weights {
        case .mmap:
            try self.init(folder: folder)
        case .tiered:
            let inv = try WeightInventory(folder: folder)
            let store = try TieredWeightStore(locations: inv.locations, streamed: [], prefetchDepth: 0, ledger: Ledger(budget: nil),
                                              location: folder.directory, cold: inv.coldNames)
            try self.init(folder: folder, model: folder.load(store: store))
        }
    }

    /// The folder at `directory` around an already built `model`.
    public convenience init(directory: String, model: CausalLM) throws {
        try self.init(folder: ModelFolder(path: directory), model: model)
    }

    public var spec: ModelSpec { model.spec }

    public func requireTokenizer() throws -> Tokenizer {
        guard let t = tokenizer else { throw ConfigError.missingFile(path: (directory as NSString).appendingPathComponent("tokenizer.json")) }
        return t
    }
}

/// One generated token, as the stream delivers it.
public struct GeneratedToken: Sendable {
    public let id: Int
    /// The new text this token completes (empty while a character is incomplete).
    public let text: String
    /// Its log-probability and the most likely tokens' (when the request asked for logprobs).
    public var logprob: Float? = nil
    public var topLogprobs: [TokenLogprob] = []
    public init(id: Int, text: String, logprob: Float? = nil, topLogprobs: [TokenLogprob] = []) {
        self.id = id; self.text = text; self.logprob = logprob; self.topLogprobs = topLogprobs
    }
}

/// Why generation ended.
public enum StopReason: String, Sendable, Codable { case maxTokens = "max_tokens", eos, stopString = "stop_string", contextFull = "context_full", error, cancelled }

/// The outcome of one generation, with its timings.
public struct GenerationResult: Sendable {
    public var promptIDs: [Int]
    public var ids: [Int]
    public var text: String
    public var stopReason: StopReason
    public var prefillSeconds: Double
    public var decodeSeconds: Double
    /// Prompt tokens whose K/V came from the conversation's cache (`Generator.Conversation`).
    public var reusedPromptTokens = 0
    public var promptTokensPerSecond: Double { prefillSeconds > 0 ? Double(promptIDs.count) / prefillSeconds : 0 }
    /// Tokens after the first, over the time after the first (the first comes from the prefill).
    public var decodeTokensPerSecond: Double { decodeSeconds > 0 && ids.count > 1 ? Double(ids.count - 1) / decodeSeconds : 0 }
}

/// Generation from one prompt with a contiguous KV cache.
public struct Generator {
    /// A KV cache kept from one generation to the next (a chat): the next prompt computes only
    /// the tokens after the longest prefix it shares with what the cache holds.
    public final class Conversation {
        let cache: KVCache
        /// the tokens whose K/V the cache holds, in order
        public private(set) var ids: [Int] = []
        public init(_ loaded: LoadedModel, kvType: DType = .kvDefault) throws {
            cache = try loaded.model.makeCache(capacity: loaded.spec.maxPositions, type: kvType)
        }
        /// Forgets everything (/reset).
        public func clear() { cache.truncate(to: 0); ids = [] }
        /// Keeps the longest prefix of the cache shared with `prompt`, leaving at least one prompt
        /// token to compute (its logits start the answer); returns how many tokens are kept.
        func keep(sharedWith prompt: [Int]) -> Int {
            var n = 0
            while n < ids.count && n < prompt.count - 1 && ids[n] == prompt[n] { n += 1 }
            cache.truncate(to: n)
            ids.removeSubrange(n...)
            return n
        }
        func record(_ tokens: [Int]) { ids = Array(tokens.prefix(cache.length)) }
    }

    public let loaded: LoadedModel
    /// What the KV cache stores keys and values as (`DType.kvTypes`).
    public let kvType: DType
    /// Checked after each token: true ends the generation as `.cancelled` (the CLI wires Ctrl-C
    /// here; default never).
    public var shouldStop: @Sendable () -> Bool = { false }

    public init(_ loaded: LoadedModel, kvType: DType = .kvDefault) { self.loaded = loaded; self.kvType = kvType }

    /// Runs to completion, calling `onToken` for each token (return false to stop early). With
    /// `conversation`, its cache is used and kept: only the prompt's tokens past the prefix it
    /// shares with the cache are computed (`reusedPromptTokens` says how many were not).
    public func generate(promptIDs: [Int], parameters: SamplingParameters, conversation: Conversation? = nil,
                         onToken: (GeneratedToken) throws -> Bool = { _ in true }) throws -> GenerationResult {
        try parameters.validate()
        let model = loaded.model
        guard !promptIDs.isEmpty else { throw ModelError.emptyInput }
        try model.checkTokens(promptIDs)
        let capacity = conversation?.cache.capacity ?? min(model.spec.maxPositions, promptIDs.count + min(parameters.maxTokens, model.spec.maxPositions))
        if promptIDs.count > capacity { throw ModelError.contextFull(needed: promptIDs.count, capacity: capacity) }
        let reused = conversation?.keep(sharedWith: promptIDs) ?? 0
        let cache = try conversation?.cache ?? model.makeCache(capacity: capacity, type: kvType)
        var seq = SequenceOutput(loaded: loaded, parameters: parameters, prompt: promptIDs)
        var result = GenerationResult(promptIDs: promptIDs, ids: [], text: "", stopReason: .maxTokens, prefillSeconds: 0, decodeSeconds: 0)
        result.reusedPromptTokens = reused
        if parameters.maxTokens == 0 { return result }
        defer { conversation?.record(promptIDs + seq.generated) }
        let t0 = now()
        var logits = try promptIDs[reused...].map(Int32.init).withUnsafeBufferPointer { try model.forward($0, cache: cache, allLogits: false) }
        var tFirst = now()
        result.prefillSeconds = tFirst - t0
        var one: [Int32] = [0]
        while true {
            let (tok, stop) = try seq.next(logits, model: model, position: promptIDs.count + seq.generated.count - 1, contextFull: false) {
                promptIDs.map(Int32.init)
            }
            let go = try onToken(tok)
            if let stop { result.stopReason = stop; break }
            if !go { break }
            if shouldStop() { result.stopReason = .cancelled; break }
            if cache.length >= cache.capacity { result.stopReason = .contextFull; break }
            if seq.generated.count == 1 { tFirst = now() }
            one[0] = Int32(tok.id)
            logits = try one.withUnsafeBufferPointer { try model.forward($0, cache: cache, allLogits: false) }
        }
        if result.stopReason != .stopString, case let tail = seq.finish(), !tail.isEmpty {
            _ = try onToken(GeneratedToken(id: -1, text: tail))
        }
        // the tokens and the text handed out, as the sequence's output side kept them
        result.ids = seq.generated
        result.text = seq.text.text
        result.decodeSeconds = now() - tFirst
        return result
    }

    /// Streams tokens as they are generated; the stream ends with the result's tokens all delivered.
    public func stream(promptIDs: [Int], parameters: SamplingParameters) -> AsyncThrowingStream<GeneratedToken, Error> {
        let loaded = self.loaded
        return AsyncThrowingStream { continuation in
            let thread = Thread {
                do {
                    _ = try Generator(loaded).generate(promptIDs: promptIDs, parameters: parameters) { tok in
                        if case .terminated = continuation.yield(tok) { return false }
                        return true
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: error)
                }
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
    }
}
