import Foundation
import FuzzSupport
import Strata

/// A GGUF file: read, turned into a model folder (config, tokenizer, checkpoint) and its
/// tensors viewed, or a typed error.
let path = NSTemporaryDirectory() + "strata-fuzz-\(getpid()).gguf"

func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size))
    if let folder = try? ModelFolder(path: path), let ck = folder.checkpoint {
        for name in ck.tensorNames.prefix(64) { _ = try? ck.tensor(name) }
        _ = try? folder.chatFormat()
    }
    return 0
}

runFuzzer { data, size in data.map { fuzzOne($0, size) } ?? 0 }
