module VagrantPlugins
  module Boxpack
    VERSION = "0.1.0".freeze
  end
end
