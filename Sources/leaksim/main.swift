print("leaksim")
