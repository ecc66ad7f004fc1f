import Foundation
import FuzzSupport
import Strata

/// A safetensors file (header and data) must open or give a typed error.
let path = NSTemporaryDirectory() + "strata-fuzz-st-\(getpid()).safetensors"

func fuzzOne(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FileManager.default.createFile(atPath: path, contents: Data(bytes: data, count: size))
    if let f = try? SafetensorsFile(path: path) {
        for name in f.entries.keys.prefix(64) { _ = try? f.tensor(name) }
    }
    return 0
}

runFuzzer { data, size in data.map { fuzzOne($0, size) } ?? 0 }
